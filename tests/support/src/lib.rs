//! Shared by the host crates' tests and benchmarks: where the workspace and the built plugin
//! components are (`make plugins`, or `OMNI_PLUGIN_WASM_DIR`), and sandboxes and registries over
//! them with the repository's templates. A missing component fails the test with the command
//! that builds it; nothing here skips.

pub mod cassandra;
pub mod kubernetes;
pub mod memories;
pub mod s3;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use omni_runtime::{LimitsConfig, Registry, Sandbox, SandboxConfig, Templates};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The directory of the built components (`make plugins`), or `OMNI_PLUGIN_WASM_DIR`.
pub fn wasm_dir() -> PathBuf {
    std::env::var_os("OMNI_PLUGIN_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/wasm32-wasip2/plugin"))
}

/// The path of a built component: `rpm`, `srpm`, `iso` or `hostile`; panics, naming the command
/// that builds it, when it has not been built.
pub fn component_path(name: &str) -> PathBuf {
    let file = wasm_dir().join(format!("omni_plugin_{name}.wasm"));
    assert!(
        file.is_file(),
        "{}: missing; build the plugins first with `make plugins`",
        file.display()
    );
    file
}

/// The bytes of a built component (see [`component_path`]).
pub fn component(name: &str) -> Vec<u8> {
    let file = component_path(name);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// A sandbox over the repository's templates with these limits, sharing one compile cache
/// (under `target/`) across tests so each component compiles once per build.
pub fn sandbox(limits: serde_json::Value) -> Arc<Sandbox> {
    sandbox_with(limits, Some(workspace().join("target/omni-test-cache")))
}

/// A sandbox with a compile cache in `cache`.
pub fn sandbox_with(limits: serde_json::Value, cache: Option<PathBuf>) -> Arc<Sandbox> {
    let limits: LimitsConfig = serde_json::from_value(limits).unwrap();
    let config = SandboxConfig {
        cache_dir: cache,
        limits,
        ..SandboxConfig::default()
    };
    sandbox_over(&workspace().join("templates"), config)
}

/// A sandbox over the templates root `templates` (one directory per task) with `config`.
pub fn sandbox_over(templates: &Path, config: SandboxConfig) -> Arc<Sandbox> {
    Arc::new(Sandbox::new(config, Arc::new(Templates::new(templates))).unwrap())
}

/// Copies the repository's `templates/<task>/` into `<root>/<task>/`, for a test that edits
/// them.
pub fn copy_templates(task: &str, root: &Path) {
    let dir = root.join(task);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(workspace().join("templates").join(task)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
}

/// Waits on this thread, up to a minute, until `condition` holds (work a plugin does in the
/// background: its optimized code, its snapshot); fails the test naming `what` otherwise.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if condition() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("gave up waiting for {what}");
}

/// How long [`eventually`] waits: long enough that only a hang takes it (the 2-core CI machine
/// runs many test binaries at once), so how long something took is a benchmark's business.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(180);

/// Waits until `check` yields a value and returns it, checking every 20 ms (on tokio's clock,
/// so a test with paused time advances it); fails the test naming `what` after [`PATIENCE`].
/// The one way async tests wait for something to happen: absence is proved by waiting for a
/// condition that would show presence, never by sleeping.
///
/// Between checks at least a millisecond of real time passes too. With paused time the clock
/// jumps to the next timer whenever every task waits, including while work goes on on another
/// thread (the embedded store's writer); a check that costs nothing would then spend the whole
/// patience during one slow write. So the paused clock runs at most 20 times faster than real
/// time here, and the patience is never less than a twentieth of [`PATIENCE`] of real time.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what} after {PATIENCE:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // A blocking task also holds a paused clock still while it runs.
        let _ = tokio::task::spawn_blocking(|| {
            std::thread::sleep(std::time::Duration::from_millis(1));
        })
        .await;
    }
}

/// The stored events of job `id`, in stream order, once there are `count` of them (a store may
/// hold events back for a moment: see `event_settle`).
pub async fn events_of(
    jobs: &omni_jobs::JobService,
    id: omni_store::JobId,
    count: usize,
) -> Vec<omni_store::Event> {
    eventually(&format!("{count} events of job {id}"), || async {
        let mut events = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = jobs
                .read_events(after.as_deref(), &omni_store::EventFilter::default(), 1000)
                .await
                .ok()?;
            let empty = page.items.is_empty();
            events.extend(page.items.into_iter().filter(|e| e.job_id == id));
            if empty {
                break;
            }
            after = Some(page.next);
        }
        (events.len() >= count).then_some(events)
    })
    .await
}

/// A registry over a fresh temporary plugins directory holding the named components, keeping
/// the versions it loads in [`VERSIONS`] under it (which the registry does not scan).
pub fn registry(sandbox: Arc<Sandbox>, names: &[&str]) -> (tempfile::TempDir, Arc<Registry>) {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        std::fs::write(dir.path().join(format!("{name}.wasm")), component(name)).unwrap();
    }
    let registry =
        Arc::new(Registry::new(sandbox, dir.path()).keeping_versions_in(dir.path().join(VERSIONS)));
    registry.scan();
    (dir, registry)
}

/// Where [`registry`] keeps plugin versions, under its plugins directory.
pub const VERSIONS: &str = ".versions";

/// A job service over the named plugins and an embedded store, both in temporary directories
/// that live as long as the returned guard.
pub fn job_service(names: &[&str]) -> (Dirs, omni_jobs::JobService) {
    let (plugins, registry) = registry(sandbox(serde_json::json!({})), names);
    let data = tempfile::tempdir().unwrap();
    let store = omni_store_embedded::EmbeddedStore::open(
        data.path(),
        omni_store_embedded::EmbeddedConfig::default(),
    )
    .unwrap();
    let service = omni_jobs::JobService::new(
        Arc::new(store),
        Arc::clone(&registry) as _,
        artifacts_in(data.path()),
    );
    (
        Dirs {
            plugins,
            data,
            registry,
        },
        service,
    )
}

/// A job service over `plugins` (a test's own, such as the scheduler's unit tests' in-process
/// plugin) and an embedded store in a temporary directory that lives as long as the returned
/// guard; the store too, for making jobs past the service. No component is loaded: nothing here
/// runs wasm, so tests with paused time can use it.
pub fn job_service_with(
    plugins: Arc<dyn omni_core::Plugins>,
) -> (
    tempfile::TempDir,
    Arc<dyn omni_store::Store>,
    omni_jobs::JobService,
) {
    let data = tempfile::tempdir().unwrap();
    let store: Arc<dyn omni_store::Store> = Arc::new(
        omni_store_embedded::EmbeddedStore::open(
            data.path(),
            omni_store_embedded::EmbeddedConfig::default(),
        )
        .unwrap(),
    );
    let service =
        omni_jobs::JobService::new(Arc::clone(&store), plugins, artifacts_in(data.path()));
    (data, store, service)
}

/// The directory artifact store under `dir`'s `artifacts/`, as `omni serve` keeps one under
/// its data directory.
pub fn artifacts_in(dir: &std::path::Path) -> Arc<dyn omni_artifacts::ArtifactStore> {
    Arc::new(omni_artifacts::Directory::open(dir.join("artifacts")).unwrap())
}

/// Temporary directories a test keeps until it ends, and the registry over the plugins one.
#[derive(Debug)]
pub struct Dirs {
    /// The plugins directory.
    pub plugins: tempfile::TempDir,
    /// The data directory (the store).
    pub data: tempfile::TempDir,
    /// The plugins the job service uses (the API shows their status).
    pub registry: Arc<Registry>,
}

/// A plugins directory a test keeps until it ends, and the registry over it.
#[derive(Debug)]
pub struct Plugins {
    /// The directory.
    pub dir: tempfile::TempDir,
    /// The registry.
    pub registry: Arc<Registry>,
}

/// A job context for `arch`.
pub fn job(arch: &str) -> omni_runtime::JobContext {
    omni_runtime::JobContext {
        job_id: "3f1e2d4c-8a7b-11f0-9c5d-0242ac120002".into(),
        service: "test".into(),
        domain: "default".into(),
        namespace: "omni-jobs".into(),
        name: "omni-3f1e2d4c-8a7b-11f0-9c5d-0242ac120002".into(),
        arch: arch.into(),
    }
}

/// The same component with a custom section appended: a different file (and digest) that
/// behaves the same, as a rebuilt plugin would.
pub fn rebuilt(bytes: &[u8], nonce: &str) -> Vec<u8> {
    let name = b"omni-test-nonce";
    let mut payload = vec![u8::try_from(name.len()).unwrap()];
    payload.extend_from_slice(name);
    payload.extend_from_slice(nonce.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    let mut len = payload.len();
    loop {
        let byte = u8::try_from(len & 0x7f).unwrap();
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&payload);
    out
}

/// Runs a testbed script's `command`, fails the test with its stderr when it fails, and returns
/// the last line it printed (the scripts print their answer last).
fn last_line(mut command: std::process::Command) -> String {
    let what = format!("{command:?}");
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A real `.tar.gz` at `<dir>/<name>-<version>.tar.gz` of one directory
/// `<name>-<version>/` holding `mib` MiB that do not compress (a xorshift stream): a tarball
/// as large as a source too big for a request body. Answers its path.
pub fn incompressible_tarball(dir: &Path, name_version: &str, mib: usize) -> PathBuf {
    let tree = dir.join(name_version);
    std::fs::create_dir_all(&tree).expect("the tarball's directory");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..mib << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(tree.join("data.bin"), noise).expect("the tarball's file");
    let tarball = dir.join(format!("{name_version}.tar.gz"));
    let made = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir)
        .arg(name_version)
        .status()
        .expect("tar");
    assert!(made.success(), "tar failed");
    tarball
}

/// A job service over `store` with no plugins loaded (for tests that make jobs through the store
/// and move them through the service, as the event stream's tests do); the registry's empty
/// plugins directory (which holds the artifacts too) and its registry live as long as the
/// returned guard.
pub fn job_service_over(store: Arc<dyn omni_store::Store>) -> (Plugins, omni_jobs::JobService) {
    let (dir, registry) = registry(sandbox(serde_json::json!({})), &[]);
    // Artifacts beside the plugin versions, in the plugins directory the guard keeps.
    let artifacts = artifacts_in(&dir.path().join(VERSIONS));
    let service = omni_jobs::JobService::new(store, Arc::clone(&registry) as _, artifacts);
    (Plugins { dir, registry }, service)
}

/// A `pending` job of `service` and `task` in `domain`, as the job service would make it, to be
/// stored with `Store::create_job`.
pub fn pending_job(service: &str, task: &str, domain: &str) -> omni_store::Job {
    let id = omni_store::new_job_id();
    let created = omni_store::now();
    omni_store::Job {
        rendering: None,
        id,
        service: service.into(),
        task: task.into(),
        domain: domain.into(),
        arch: "x86_64".into(),
        state: omni_store::JobState::Pending,
        params: serde_json::json!({}),
        plugin: omni_store::PluginRef {
            task: task.into(),
            version: "0.1.0".into(),
            digest: "ab".repeat(32),
            templates: None,
        },
        engine: None,
        message: None,
        steps: Vec::new(),
        created_at: created,
        updated_at: created,
        started_at: None,
        finished_at: None,
    }
}

/// Whether a live process of this machine runs `sleep <seconds>` (a value unique to one test,
/// so that a test finds the processes its job left, and no other); a zombie does not count.
pub fn sleeping(seconds: &str) -> bool {
    let cmdline = format!("sleep\0{seconds}\0");
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let path = entry.path();
        std::fs::read(path.join("cmdline")).is_ok_and(|c| c == cmdline.as_bytes())
            && !std::fs::read_to_string(path.join("stat")).is_ok_and(|s| s.contains(") Z "))
    })
}
