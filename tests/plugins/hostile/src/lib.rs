//! A hostile plugin, built as a test fixture for the host's sandbox (like wasmtime's
//! test-programs). Its `serialize` misbehaves in the way its `behaviour` param names, so the
//! host's tests can prove each misbehaviour ends in a distinct, clear error while other calls
//! keep being served. `validate` behaves, and so does `describe` unless the template file
//! `describe` of the task (`templates/hostile/describe`, served by the host) says `sleep` (sleep
//! ten minutes) or `loop` (spin while that file still says `loop`): a plugin whose load
//! misbehaves. Some behaviours are not misbehaviours but probes of what WASI answers a plugin
//! (`nap`, `startup`).

use omni_sdk::{Context, Error, Job, JsonSchema, Plugin, Rendered};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// How to misbehave.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// Render a small valid Job.
    Behave,
    /// Spin forever.
    Loop,
    /// Allocate memory until something stops it.
    Alloc,
    /// Panic.
    Panic,
    /// Answer a 50 MiB manifest.
    Huge,
    /// Try to read a host file through WASI.
    ReadFile,
    /// Sleep for ten minutes, then render: longer than any call's deadline.
    Sleep,
    /// Sleep for a millisecond, then render: a wait well within the deadline.
    Nap,
    /// Ask what a language runtime asks when it starts or raises (environment, arguments,
    /// working directory, preopened directories through a file open) and render a Job whose
    /// `extra` annotation reports the answers.
    Startup,
    /// Answer a manifest whose body is not a Kubernetes object.
    BadOutput,
    /// Render a valid Job whose one step runs (sleeps) for ten minutes: a job that is still
    /// running when a test cancels it or fills an engine with it.
    Linger,
    /// Render a Job whose container has no command: valid for Kubernetes, which runs the
    /// image's entrypoint, refused by the local engine, which runs no images.
    NoCommand,
    /// Render a Job whose step prints `lines` lines (`line 1`, `line 2`, ...; empty ones with
    /// `blank`) as fast as it can (or `burst` lines every 100 ms), waits `pause` seconds, and
    /// prints `done`: a job with a log to collect and follow.
    Print,
    /// Render a Job whose step leaves in its `output` volume a file whose name cannot be an
    /// artifact's (a control character in it) beside a plain one.
    OddOutput,
}

/// Params of the hostile task.
#[derive(Debug, Serialize, Deserialize, JsonSchema, garde::Validate)]
#[serde(deny_unknown_fields)]
#[schemars(transform = misbehave_in_describe)]
pub struct Params {
    /// What to do.
    #[garde(skip)]
    pub behaviour: Behaviour,
    /// `print`: how many lines.
    #[serde(default = "default_lines")]
    #[garde(skip)]
    pub lines: u64,
    /// `print`: seconds to wait before the last line.
    #[serde(default)]
    #[garde(skip)]
    pub pause: u32,
    /// `print`: lines per burst, a burst every 100 ms (all at once when 0).
    #[serde(default)]
    #[garde(skip)]
    pub burst: u64,
    /// `print`: empty lines instead of `line 1`, `line 2`, ... (what costs a log most per byte).
    #[serde(default)]
    #[garde(skip)]
    pub blank: bool,
}

/// Runs when `describe` builds the params schema: misbehaves as the `describe` template file
/// says. The SDK gives `describe` no context, so this asks the host through the SDK's
/// bindings directly (a fixture may; a plugin should not).
fn misbehave_in_describe(_: &mut schemars::Schema) {
    #[cfg(target_arch = "wasm32")]
    {
        use omni_sdk::__private::bindings::omni::plugin::host::template;
        let says = |what: &str| template("describe").is_some_and(|t| t.trim() == what);
        if says("sleep") {
            std::thread::sleep(std::time::Duration::from_secs(600));
        }
        while says("loop") {
            std::hint::spin_loop();
        }
    }
}

fn default_lines() -> u64 {
    100
}

/// The hostile task.
#[derive(Debug)]
pub struct Hostile;

impl Plugin for Hostile {
    type Params = Params;
    const TASK: &'static str = "hostile";
    const DESCRIPTION: &'static str = "Misbehaves on purpose (test fixture)";
    const ARCHES: &'static [&'static str] = &["x86_64", "aarch64"];
    const STEPS: &'static [&'static str] = &["run"];

    fn serialize(job: &Job, params: Params, ctx: &Context) -> Result<Rendered, Error> {
        let job_with = |extra: &str, command: serde_json::Value| {
            json!({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": job.name, "annotations": {"extra": extra}},
                "spec": {"template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "run", "image": "busybox", "command": command}]}}}
            })
        };
        let job_object = |extra: &str| job_with(extra, json!(["true"]));
        match params.behaviour {
            Behaviour::Behave => Rendered::from_objects(Self::TASK, job, vec![job_object("")]),
            Behaviour::Linger => {
                Rendered::from_objects(Self::TASK, job, vec![job_with("", json!(["sleep", "600"]))])
            }
            Behaviour::Print => {
                let (lines, pause) = (params.lines, params.pause);
                let script = if params.blank {
                    format!("yes '' | head -n {lines}; sleep {pause}; echo done")
                } else if params.burst == 0 {
                    format!("seq -f 'line %.0f' 1 {lines}; sleep {pause}; echo done")
                } else {
                    let burst = params.burst;
                    format!(
                        "i=0; while [ $i -lt {lines} ]; do end=$((i + {burst})); \
                         [ $end -gt {lines} ] && end={lines}; seq -f 'line %.0f' $((i + 1)) $end; \
                         i=$end; sleep 0.1; done; sleep {pause}; echo done"
                    )
                };
                Rendered::from_objects(
                    Self::TASK,
                    job,
                    vec![job_with("", json!(["/bin/sh", "-c", script]))],
                )
            }
            Behaviour::NoCommand => {
                let mut object = job_object("");
                object["spec"]["template"]["spec"]["containers"][0]
                    .as_object_mut()
                    .map(|c| c.remove("command"));
                Rendered::from_objects(Self::TASK, job, vec![object])
            }
            Behaviour::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Behaviour::Alloc => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Behaviour::Panic => panic!("the hostile plugin panics on purpose"),
            Behaviour::Huge => {
                Rendered::from_objects(Self::TASK, job, vec![job_object(&"x".repeat(50 << 20))])
            }
            Behaviour::ReadFile => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => Err(Error::Internal(format!(
                    "read {} bytes of /etc/passwd",
                    text.len()
                ))),
                Err(e) => Err(Error::Internal(format!("reading /etc/passwd failed: {e}"))),
            },
            Behaviour::Sleep => {
                std::thread::sleep(std::time::Duration::from_secs(600));
                Rendered::from_objects(Self::TASK, job, vec![job_object("")])
            }
            Behaviour::Nap => {
                std::thread::sleep(std::time::Duration::from_millis(1));
                Rendered::from_objects(Self::TASK, job, vec![job_object("")])
            }
            Behaviour::Startup => {
                let env = std::env::vars().count();
                let args = std::env::args().count();
                let cwd = std::env::current_dir()
                    .map_or_else(|e| format!("error ({e})"), |d| d.display().to_string());
                let file = std::fs::read_to_string("/etc/passwd")
                    .map_or_else(|e| format!("error ({e})"), |t| format!("{} bytes", t.len()));
                let report = format!("env {env}; args {args}; cwd {cwd}; /etc/passwd {file}");
                Rendered::from_objects(Self::TASK, job, vec![job_object(&report)])
            }
            Behaviour::OddOutput => {
                let mut object = job_with(
                    "",
                    json!([
                        "/bin/sh",
                        "-c",
                        "echo ok > /out/plain; echo odd > \"/out/bad$(printf '\\001')name\""
                    ]),
                );
                let spec = &mut object["spec"]["template"]["spec"];
                spec["volumes"] = json!([{"name": "output", "emptyDir": {}}]);
                spec["containers"][0]["volumeMounts"] =
                    json!([{"name": "output", "mountPath": "/out"}]);
                Rendered::from_objects(Self::TASK, job, vec![object])
            }
            Behaviour::BadOutput => {
                ctx.log(
                    omni_sdk::Level::Warn,
                    "answering a manifest that is not an object",
                );
                let mut rendered = Rendered::from_objects(Self::TASK, job, vec![job_object("")])?;
                rendered.manifests[0].body = json!("not an object");
                Ok(rendered)
            }
        }
    }
}

omni_sdk::export_plugin!(Hostile);
