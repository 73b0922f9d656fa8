//! # omni-engine-local: jobs as processes on this machine
//!
//! [`LocalEngine`] is Omni's engine for one machine, the embedded default: an
//! `omni_engine::Engine` over a [`LocalRunner`]. The runner runs a rendered Kubernetes Job
//! without Kubernetes, for trying Omni and developing plugins on one machine: the primary Job's
//! init containers in order, then its containers, each as a process with its command and args,
//! its environment (literal values and ConfigMap keys from the rendered ConfigMaps) and its
//! working directory. Images are not run: the commands use the tools of this machine.
//!
//! Every step runs in a sandbox ([`sandbox`]): bubblewrap with new user, mount, pid, ipc, uts
//! and network namespaces, the job's build root (a root directory per arch, or the host's
//! system directories; writable by the job alone through overlayfs when the server is root), the job's volumes
//! bind-mounted at their mount paths (`readOnly` honoured), private `/dev`, `/proc` and `/tmp`,
//! nothing of the server's (its environment, data, configuration, other jobs), no network
//! unless the step asks (then a stack of its own through slirp4netns, without the host's
//! loopback, unless the engine says otherwise), resource limits, and as a uid that is neither
//! root nor the server's. A host where bubblewrap cannot start refuses to run jobs
//! ([`LocalRunner::probe`]), unless the operator sets `unsandboxed = true`
//! ([`Isolation::Unsandboxed`]): then the steps are plain processes of the server's user, and
//! every environment value, working directory and whole argument that is a mount path, or a
//! path under one, is rewritten to the volume's directory (a path written inside a script is
//! not).
//!
//! Volumes: each job gets a directory (`<root>/<job>/`), and each pod volume a directory in it
//! (`volumes/<name>/`): ConfigMap volumes hold the map's keys as files, emptyDir volumes start
//! empty. `HOME` is the job's own `home/` (`/home/omni` in the sandbox), so a step never writes
//! into the user's home. A job's input files (the uploads its params name,
//! [`omni_engine::Inputs`]) are written into its `uploads` volume before the first step, each
//! read-only and named by its sha256, their size and sha256 checked (`inputs`).
//!
//! Each step's stdout and stderr are read line by line into [`Event::Line`]s; a step that exits
//! non-zero fails the job and the steps after it do not run; `activeDeadlineSeconds` and
//! [`Run::cancel`] kill the running step: its sandbox's pid namespace, so every process it
//! started dies with it (and so does anything it left behind when it ends by itself). What the
//! job leaves in its volumes stays in the job directory until [`LocalRunner::remove`]: a purge,
//! or the engine's sweep `keep_finished` after the job ended. The regular files of its
//! `output` volume are its outputs ([`omni_engine::Engine::outputs`], each with the step that
//! last wrote it), which the scheduler keeps as the job's artifacts when it ends.
//!
//! Layout: the runner here; `engine` ([`LocalEngine`]) tracks jobs for the `Engine` trait,
//! `config` ([`LocalEngineConfig`]), `spool` (a job's log in `log.jsonl`, read back by each
//! follower), `inputs` (a job's input files, written), `outputs` (a job's output files and
//! the steps that wrote them), `sweep`
//! (removing old job directories), [`sandbox`], [`root`] (a job's build
//! root: a configured root per arch or the host's directories, writable for the job alone
//! through overlayfs) and `plan` (what a rendered Job becomes), `error` (why a run or the
//! sandbox probe could not start).
//!
//! This crate knows rendered manifests and processes, nothing of the store, HTTP or plugins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use omni_engine::text::{LineSplitter, MAX_LINE_BYTES, decode_line};
use omni_engine::{INPUTS_VOLUME, Inputs};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::{Notify, mpsc};

mod config;
mod engine;
mod error;
mod inputs;
mod outputs;
mod plan;
pub mod root;
pub mod sandbox;
mod spool;
mod sweep;

pub use config::LocalEngineConfig;
pub use engine::LocalEngine;
pub use error::{ProbeError, RunError};
pub use plan::{
    Mount, NETWORK_ANNOTATION, Plan, PlanError, READ_ONLY_ROOT_ANNOTATION, StepPlan, Volume,
};
pub use root::JobRoot;
pub use sandbox::{JobUid, Sandbox, SandboxConfig, SandboxError};

/// What a run reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A step's process started.
    StepStarted {
        /// The step (container) name.
        step: String,
    },
    /// A line a step printed, without its line ending: lines longer than
    /// [`omni_engine::text::MAX_LINE_BYTES`] come in pieces, and bytes that are not text are
    /// escaped ([`omni_engine::text::decode_line`]).
    Line {
        /// The step.
        step: String,
        /// Standard error rather than standard output.
        stderr: bool,
        /// The text.
        line: String,
    },
    /// A step's process ended.
    StepEnded {
        /// The step.
        step: String,
        /// Its exit code (none when a signal ended it).
        exit_code: Option<i32>,
    },
    /// The run ended; nothing follows.
    Ended(Outcome),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step exited 0.
    Succeeded,
    /// A step failed, or could not start; the message says which and how.
    Failed(String),
    /// `activeDeadlineSeconds` passed; the running step was killed.
    DeadlineExceeded(String),
    /// [`Run::cancel`] killed it.
    Cancelled,
}

/// How a runner runs steps.
#[derive(Debug, Clone)]
pub enum Isolation {
    /// In the sandbox.
    Sandboxed(Arc<Sandbox>),
    /// As plain processes of the server's user, seeing all it sees (`unsandboxed = true`).
    Unsandboxed,
}

/// A started run: its events, and a way to stop it.
#[derive(Debug)]
pub struct Run {
    /// Events, ending with [`Event::Ended`].
    pub events: mpsc::Receiver<Event>,
    cancel: Arc<Notify>,
    dir: PathBuf,
}

impl Run {
    /// Kills the running step's process group; the run ends with [`Outcome::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.notify_one();
    }

    /// A handle that cancels this run, for holders that give the events away.
    pub fn canceller(&self) -> Canceller {
        Canceller(Arc::clone(&self.cancel))
    }

    /// The job's directory (volumes, home).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Cancels one run ([`Run::canceller`]); cancelling a run that has ended does nothing.
#[derive(Debug, Clone)]
pub struct Canceller(Arc<Notify>);

impl Canceller {
    /// As [`Run::cancel`].
    pub fn cancel(&self) {
        self.0.notify_one();
    }
}

/// Runs jobs under one root directory.
#[derive(Debug, Clone)]
pub struct LocalRunner {
    root: PathBuf,
    isolation: Isolation,
}

impl LocalRunner {
    /// A runner keeping job directories under `root`, running steps in the sandbox with its
    /// defaults.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::with_isolation(
            root,
            Isolation::Sandboxed(Arc::new(Sandbox::new(SandboxConfig::default()))),
        )
    }

    /// A runner keeping job directories under `root` (made absolute now: the steps run in
    /// directories of their own), running steps as `isolation` says.
    pub fn with_isolation(root: impl Into<PathBuf>, isolation: Isolation) -> Self {
        let root = root.into();
        LocalRunner {
            root: std::path::absolute(&root).unwrap_or(root),
            isolation,
        }
    }

    /// How steps run.
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// The directory job directories are made in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of job `id`.
    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// The directory of one of a job's volumes (e.g. its output).
    pub fn volume_dir(&self, id: &str, volume: &str) -> PathBuf {
        self.job_dir(id).join("volumes").join(volume)
    }

    /// Prepares job `id`'s directory and starts running `plan` in the background.
    ///
    /// # Errors
    /// [`RunError`] when the directory or the ConfigMap files cannot be written, and
    /// [`RunError::Started`] when the job's directory exists already: a job is started at most
    /// once (after [`LocalRunner::remove`], its id may start again).
    pub fn start(&self, id: &str, plan: Plan) -> Result<Run, RunError> {
        self.start_with(id, plan, Inputs::default())
    }

    /// [`LocalRunner::start`], with `inputs` written into the plan's [`INPUTS_VOLUME`] (when it
    /// has one) before the first step.
    ///
    /// # Errors
    /// As [`LocalRunner::start`]; [`RunError::Inputs`] when the plan's
    /// [`INPUTS_VOLUME`] is not an empty directory.
    pub fn start_with(&self, id: &str, plan: Plan, inputs: Inputs) -> Result<Run, RunError> {
        inputs::check(&plan, &inputs).map_err(RunError::Inputs)?;
        let dir = self.job_dir(id);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| RunError::Io { path, source }
        };
        let uid = match &self.isolation {
            Isolation::Sandboxed(sandbox) => sandbox.allocate()?,
            Isolation::Unsandboxed => None,
        };
        // The job's directory is made here and only here: one that exists already was made by
        // an earlier start of the job, maybe by a server that stopped while it ran. A job is
        // run at most once; its directory goes with its record.
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RunError::Started(id.to_owned()));
            }
            Err(e) => return Err(io(&dir)(e)),
        }
        let home = dir.join("home");
        std::fs::create_dir_all(&home).map_err(io(&home))?;
        let etc = dir.join("etc");
        sandbox::write_etc(&etc).map_err(io(&etc))?;
        // The job's uid owns what its steps write, and nothing else.
        let own = |path: &Path| match &uid {
            Some(uid) => {
                std::os::unix::fs::chown(path, Some(uid.uid()), Some(uid.uid())).map_err(io(path))
            }
            None => Ok(()),
        };
        own(&home)?;
        let job_root = match &self.isolation {
            Isolation::Sandboxed(sandbox) => Some(
                root::prepare_for(sandbox, &plan, &dir, uid.as_ref().map(JobUid::uid))
                    .map_err(io(&dir.join(root::ROOT_DIR)))?,
            ),
            Isolation::Unsandboxed => None,
        };
        let mut volume_dirs = BTreeMap::new();
        for (name, volume) in &plan.volumes {
            let path = self.volume_dir(id, name);
            std::fs::create_dir_all(&path).map_err(io(&path))?;
            if let Volume::ConfigMap(data) = volume {
                for (relative, bytes) in data {
                    let plain = Path::new(relative)
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_)));
                    if relative.is_empty() || !plain {
                        return Err(RunError::BadKey(relative.clone(), name.clone()));
                    }
                    let file = path.join(relative);
                    if let Some(parent) = file.parent() {
                        std::fs::create_dir_all(parent).map_err(io(parent))?;
                    }
                    std::fs::write(&file, bytes).map_err(io(&file))?;
                }
            } else {
                own(&path)?;
            }
            volume_dirs.insert(name.clone(), path);
        }
        let (sender, events) = mpsc::channel(1024);
        let cancel = Arc::new(Notify::new());
        let job = Job {
            inputs,
            plan,
            root: job_root,
            volume_dirs,
            dir: dir.clone(),
            home,
            etc,
            isolation: self.isolation.clone(),
            uid,
            events: sender,
            cancel: cancel.clone(),
        };
        tokio::spawn(job.run());
        Ok(Run {
            events,
            cancel,
            dir,
        })
    }

    /// Runs `true` in the sandbox as a job's step would, to learn whether the sandbox can
    /// start on this host; unsandboxed, nothing to learn.
    ///
    /// # Errors
    /// What went wrong, with what the sandbox's tools printed.
    pub async fn probe(&self) -> Result<(), ProbeError> {
        if matches!(self.isolation, Isolation::Unsandboxed) {
            return Ok(());
        }
        // One directory per probe: engines may share a root.
        static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = &format!(".sandbox-probe-{}-{n}", std::process::id());
        let plan = Plan {
            steps: vec![StepPlan {
                name: "probe".to_owned(),
                argv: vec!["true".to_owned()],
                env: Vec::new(),
                working_dir: None,
                mounts: Vec::new(),
                memory: None,
                network: false,
                user: None,
                read_only_root: false,
            }],
            volumes: BTreeMap::new(),
            deadline: Some(std::time::Duration::from_secs(30)),
            arch: None,
        };
        // A probe's directory left by an earlier process of the same pid.
        let _ = std::fs::remove_dir_all(self.job_dir(id));
        let mut run = self.start(id, plan).map_err(ProbeError::Start)?;
        let mut said = Vec::new();
        let mut outcome = Outcome::Failed("the probe ended without an outcome".to_owned());
        while let Some(event) = run.events.recv().await {
            match event {
                Event::Line { line, .. } => said.push(line),
                Event::Ended(ended) => {
                    outcome = ended;
                    break;
                }
                _ => {}
            }
        }
        let _ = self.remove(id);
        match outcome {
            Outcome::Succeeded => Ok(()),
            Outcome::Failed(message) | Outcome::DeadlineExceeded(message) => {
                Err(ProbeError::Failed {
                    message,
                    said: said.join("; "),
                })
            }
            Outcome::Cancelled => Err(ProbeError::Cancelled),
        }
    }

    /// Deletes job `id`'s directory (its artifacts too).
    ///
    /// # Errors
    /// The OS's, except that a directory already gone is fine.
    pub fn remove(&self, id: &str) -> std::io::Result<()> {
        match std::fs::remove_dir_all(self.job_dir(id)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

struct Job {
    plan: Plan,
    /// Its input files, written before the first step.
    inputs: Inputs,
    /// Its build root (sandboxed).
    root: Option<JobRoot>,
    volume_dirs: BTreeMap<String, PathBuf>,
    dir: PathBuf,
    home: PathBuf,
    etc: PathBuf,
    isolation: Isolation,
    /// Held until the run ends (the uid goes back to the range when dropped).
    uid: Option<JobUid>,
    events: mpsc::Sender<Event>,
    cancel: Arc<Notify>,
}

impl Job {
    async fn run(self) {
        let deadline = self.plan.deadline.map(|d| tokio::time::Instant::now() + d);
        let mut outcome = self.write_inputs(deadline).await;
        let steps = if outcome == Outcome::Succeeded {
            &self.plan.steps[..]
        } else {
            &[]
        };
        for step in steps {
            match self.step(step, deadline).await {
                Outcome::Succeeded => {}
                ended => {
                    outcome = ended;
                    break;
                }
            }
        }
        if self.root.as_ref().is_some_and(|r| r.writable) {
            let dir = self.dir.clone();
            let _ = tokio::task::spawn_blocking(move || root::remove(&dir)).await;
        }
        let _ = self.events.send(Event::Ended(outcome)).await;
    }

    /// Writes the job's input files into its [`INPUTS_VOLUME`], if it has one; a cancel or
    /// the deadline stops it.
    async fn write_inputs(&self, deadline: Option<tokio::time::Instant>) -> Outcome {
        let Some(dir) = self.volume_dirs.get(INPUTS_VOLUME) else {
            return Outcome::Succeeded;
        };
        if self.inputs.files.is_empty() {
            return Outcome::Succeeded;
        }
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            written = inputs::write(&self.inputs, dir) => match written {
                Ok(()) => Outcome::Succeeded,
                Err(message) => Outcome::Failed(format!("the job's input files could not be written: {message}")),
            },
            () = self.cancel.notified() => Outcome::Cancelled,
            () = sleep => Outcome::DeadlineExceeded(
                "the job's deadline passed while its input files were written".to_owned(),
            ),
        }
    }

    /// `value` with a mount path prefix replaced by its volume's directory (unsandboxed).
    fn rewrite(&self, step: &StepPlan, value: &str) -> String {
        // The longest mount path first: `/work/out` before `/work`.
        let mut mounts: Vec<&Mount> = step.mounts.iter().collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.path.len()));
        for Mount { path, volume, .. } in mounts {
            let path = path.trim_end_matches('/');
            let rest = match value.strip_prefix(path) {
                Some("") => "",
                Some(rest) if rest.starts_with('/') => rest,
                _ => continue,
            };
            if let Some(dir) = self.volume_dirs.get(volume) {
                return format!("{}{rest}", dir.display());
            }
        }
        value.to_owned()
    }

    /// The unsandboxed command of `step`: the server's own view, paths rewritten.
    fn plain_command(&self, step: &StepPlan) -> Command {
        let argv: Vec<String> = step.argv.iter().map(|a| self.rewrite(step, a)).collect();
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .env_clear()
            .env("HOME", &self.home)
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("LANG", "C.UTF-8")
            .current_dir(match &step.working_dir {
                Some(dir) => PathBuf::from(self.rewrite(step, dir)),
                None => self.home.clone(),
            });
        for (key, value) in &step.env {
            command.env(key, self.rewrite(step, value));
        }
        command
    }

    async fn step(&self, step: &StepPlan, deadline: Option<tokio::time::Instant>) -> Outcome {
        let name = &step.name;
        let (mut command, mut network) = match &self.isolation {
            Isolation::Sandboxed(sandbox) => {
                let fallback;
                let root = match &self.root {
                    Some(root) => root,
                    None => {
                        fallback = sandbox.job_root(None);
                        &fallback
                    }
                };
                let paths = sandbox::JobPaths {
                    root,
                    dir: &self.dir,
                    home: &self.home,
                    etc: &self.etc,
                    volumes: &self.volume_dirs,
                };
                match sandbox.command(step, &paths, self.uid.as_ref().map(JobUid::uid)) {
                    Ok(sandbox::StepCommand { command, network }) => (command, network),
                    Err(message) => return Outcome::Failed(format!("step {name}: {message}")),
                }
            }
            Isolation::Unsandboxed => (self.plain_command(step), None),
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that killing it kills what it started (unsandboxed);
            // in the sandbox, killing bubblewrap takes its pid namespace down.
            .process_group(0)
            .kill_on_drop(true);
        let spawned = command.spawn();
        let program = command.as_std().get_program().to_owned();
        // The child's ends of the network's pipes close here with it.
        drop(command);
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                return Outcome::Failed(format!("step {name}: cannot run {program:?}: {e}"));
            }
        };
        let _ = self
            .events
            .send(Event::StepStarted { step: name.clone() })
            .await;
        let readers = [
            child
                .stdout
                .take()
                .map(|out| self.forward(name, false, out)),
            child.stderr.take().map(|err| self.forward(name, true, err)),
        ];
        let group = child.id().and_then(|pid| i32::try_from(pid).ok());
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let mut slirp = None;
        let run = async {
            if let Some(network) = &mut network {
                let started = network.start().await.map_err(|message| {
                    Outcome::Failed(format!("step {name}: no network: {message}"))
                })?;
                if let Some(note) = &started.note {
                    let _ = self
                        .events
                        .send(Event::Line {
                            step: name.clone(),
                            stderr: true,
                            line: note.clone(),
                        })
                        .await;
                }
                slirp = Some(started);
            }
            Ok(child.wait().await)
        };
        let ended = tokio::select! {
            ended = run => ended,
            () = self.cancel.notified() => Err(Outcome::Cancelled),
            () = sleep => Err(Outcome::DeadlineExceeded(format!(
                "the job's deadline ({}s) passed during step {name}",
                self.plan.deadline.map_or(0, |d| d.as_secs())
            ))),
        };
        if ended.is_err() {
            kill_group(group);
        }
        // What it printed before it ended (or was killed) is still read to the end.
        for reader in readers.into_iter().flatten() {
            let _ = reader.await;
        }
        let outcome = self.ended(name, ended, &mut child).await;
        // Only now that the sandbox is gone: its block pipe, closed, would let its command run.
        drop(network);
        if let Some(slirp) = slirp {
            slirp.stop().await;
        }
        outcome
    }

    /// What the step whose wait ended so reports, once its sandbox is gone.
    async fn ended(
        &self,
        name: &str,
        ended: Result<std::io::Result<std::process::ExitStatus>, Outcome>,
        child: &mut tokio::process::Child,
    ) -> Outcome {
        match ended {
            Ok(Ok(status)) => {
                let _ = self
                    .events
                    .send(Event::StepEnded {
                        step: name.to_owned(),
                        exit_code: status.code(),
                    })
                    .await;
                if status.success() {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed(match status.code() {
                        Some(code) => format!("step {name} exited with code {code}"),
                        None => format!("step {name} was killed by a signal"),
                    })
                }
            }
            Ok(Err(e)) => Outcome::Failed(format!("step {name}: waiting for it failed: {e}")),
            Err(outcome) => {
                let _ = child.wait().await;
                let _ = self
                    .events
                    .send(Event::StepEnded {
                        step: name.to_owned(),
                        exit_code: None,
                    })
                    .await;
                outcome
            }
        }
    }

    fn forward(
        &self,
        step: &str,
        stderr: bool,
        pipe: impl AsyncRead + Unpin + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let events = self.events.clone();
        let step = step.to_owned();
        tokio::spawn(async move {
            let mut pipe = pipe;
            let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
            let mut chunk = vec![0; 64 * 1024];
            let mut pieces = Vec::new();
            loop {
                let read = pipe.read(&mut chunk).await.unwrap_or(0);
                if read == 0 {
                    splitter.finish(&mut pieces);
                } else {
                    splitter.push(&chunk[..read], &mut pieces);
                }
                for piece in pieces.drain(..) {
                    let event = Event::Line {
                        step: step.clone(),
                        stderr,
                        line: decode_line(&piece.bytes),
                    };
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
                if read == 0 {
                    return;
                }
            }
        })
    }
}

fn kill_group(group: Option<i32>) {
    let Some(pid) = group.and_then(rustix::process::Pid::from_raw) else {
        return;
    };
    if let Err(e) = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL) {
        tracing::warn!(error = %e, "cannot kill a step's process group");
    }
}
