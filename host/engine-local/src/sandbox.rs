//! The sandbox every step of a local job runs in: bubblewrap (`bwrap`, from the system's
//! packages) with new user, mount, pid, ipc, uts, cgroup and network namespaces, and resource
//! limits set by `prlimit`.
//!
//! What a step sees: a fresh root (a tmpfs) holding the job's build root ([`crate::root`]: the
//! root directory configured for its arch, or the host's system directories, `host_paths`:
//! `/usr`, `/etc`, the `/bin` and `/lib` links..., read-only or, when the server is root, as
//! overlays writable by the job alone), minus what `hide` masks (the server's own
//! configuration, users file and directories when they lie below those); its own
//! `/dev`, `/proc`, `/tmp` and `/var/tmp`; its job's volumes at their mount paths (`readOnly`
//! honoured, ConfigMaps always read-only); the job's home at `/home/omni`; an `/etc/passwd` and
//! `/etc/group` naming only `root`, the build user `omni` (uid and gid 1000, or 0 for a step
//! whose `securityContext.runAsUser` is 0) and `nobody`. Its
//! environment is exactly the step's (plus `HOME`, `PATH` and `LANG` when it sets none). It
//! has no network (a loopback of its own) unless it asks for it ([`NETWORK_ANNOTATION`]) and the
//! engine allows it ([`Network::Host`]). It cannot make user namespaces (`--disable-userns`),
//! gain privileges (`no_new_privs`, no capabilities), or outlive its step: bubblewrap's init is
//! pid 1 of the step's pid namespace and dies with bubblewrap (`--die-with-parent`), which dies
//! with the server, and a pid namespace whose init dies is emptied by the kernel.
//!
//! Which host uid runs it: when the server is root, each running job gets its own uid from
//! `first_uid .. first_uid + uids`, which owns the job's writable directories and nothing else on
//! the host, so that files of the host's users are only readable where they are readable by
//! anyone, and so that the process limit counts the job's processes alone (the kernel does not
//! enforce `RLIMIT_NPROC` on root's processes). bubblewrap then runs as that uid, and since it
//! resolves a bind mount's source with that uid's permissions, a private mount namespace first
//! binds the job's directory at [`STAGE`] (`unshare` and `mount`, then `setpriv` to the uid). A
//! server that is not root cannot switch uids: the sandbox runs as the server's uid (still
//! uid 1000 inside), the process limit counts every process of that uid, and the isolation rests
//! on the namespaces and mounts alone.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Deserialize;
use tokio::process::Command;

use crate::plan::{NETWORK_ANNOTATION, StepPlan};
use crate::root::{JobRoot, MOUNT_SCRIPT};

/// The uid and gid a step runs as inside its sandbox.
pub const BUILD_UID: u32 = 1000;

/// Why the sandbox cannot take a job, or run one of its steps.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Every uid of the range is in use by a running job.
    #[error(
        "every uid of the sandbox's range {first}..{end} is taken by a running job; raise `uids`"
    )]
    NoFreeUid {
        /// The range's first uid.
        first: u32,
        /// The uid after its last.
        end: u32,
    },
    /// The step asks for network, and this engine gives steps none.
    #[error(
        "step {step} asks for network (annotation {NETWORK_ANNOTATION}), and this engine gives steps none: user-mode networking is not built yet; `network = \"host\"` in the engine's [engines.sandbox] lets such steps share the host's network, loopback included"
    )]
    NoNetwork {
        /// The step.
        step: String,
    },
    /// A step mounts a volume the job has no directory for.
    #[error("volume {volume:?} has no directory")]
    NoVolume {
        /// The volume.
        volume: String,
    },
    /// The job's build root cannot be used.
    #[error("the job's build root: {0}")]
    Root(String),
    /// A path the step needs is not in the job's directory.
    #[error("{} is not in the job's directory", path.display())]
    OutsideJob {
        /// The path.
        path: PathBuf,
    },
}

/// Where a root server's sandbox sees the job's directory before bubblewrap mounts its parts.
pub const STAGE: &str = "/run/omni-sandbox";

/// The home of the build user inside the sandbox (the job's `home/`).
pub const HOME: &str = "/home/omni";

/// What a step that asks for network gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Nothing: such a step fails before it starts, saying why. User-mode networking
    /// (slirp4netns or pasta, a stack of the step's own that cannot reach the host's loopback)
    /// is not built yet.
    #[default]
    None,
    /// The host's network namespace, loopback included (Omni's API, the store, a cluster's API
    /// server listening there are reachable): for operators who trust the jobs that ask.
    Host,
}

/// Resource limits of every process of a step (`setrlimit`, through `prlimit`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Address space of one process when the step's resources name no memory (MiB); a step's
    /// own `resources.limits.memory` (else `requests.memory`) wins.
    pub memory_mib: u64,
    /// CPU time of one process (seconds): SIGXCPU, then SIGKILL.
    pub cpu_seconds: u64,
    /// Processes (and threads) of the step at once.
    pub processes: u64,
    /// Largest file a process may write (MiB): SIGXFSZ, or EFBIG when that is ignored.
    pub file_size_mib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 8192,
            cpu_seconds: 4 * 3600,
            processes: 1024,
            file_size_mib: 32 * 1024,
        }
    }
}

/// `[engines.sandbox]` of a local engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// The bubblewrap binary (0.8 or later).
    pub bwrap: PathBuf,
    /// What a step that asks for network gets.
    pub network: Network,
    /// The first host uid of the range a root server gives its running jobs.
    pub first_uid: u32,
    /// How many uids the range holds: jobs running at once at most.
    pub uids: u32,
    /// The host's paths a step sees, read-only; those missing here are left out, symbolic
    /// links are made as links.
    pub host_paths: Vec<PathBuf>,
    /// Paths a step must not see even below `host_paths` (a directory becomes empty, a file
    /// empty); `omni serve` adds its configuration file, users file, data, plugin and template
    /// directories.
    pub hide: Vec<PathBuf>,
    /// Resource limits.
    pub limits: Limits,
    /// `[engines.sandbox.roots]`: a root directory per API arch (`x86_64 =
    /// "/srv/roots/openeuler-24.03"`, a tree the operator unpacked), the `/` of that arch's jobs
    /// instead of `host_paths` ([`crate::root`]).
    pub roots: BTreeMap<String, PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            bwrap: PathBuf::from("bwrap"),
            network: Network::None,
            first_uid: 100_000,
            uids: 1000,
            host_paths: [
                "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
            hide: Vec::new(),
            limits: Limits::default(),
            roots: BTreeMap::new(),
        }
    }
}

/// A prepared sandbox: the arguments every step shares, and the uids in use.
#[derive(Debug)]
pub struct Sandbox {
    config: SandboxConfig,
    /// The server is root: jobs get uids of their own.
    per_job_uid: bool,
    /// The host's paths that are directories: the layers of a root that is the host's.
    host_dirs: Vec<PathBuf>,
    /// `--symlink` arguments for the host's paths that are links.
    link_args: Vec<OsString>,
    /// Masking arguments for `hide`.
    hide_args: Vec<OsString>,
    in_use: Mutex<BTreeSet<u32>>,
}

/// A job's uid, returned to the range when dropped.
#[derive(Debug)]
pub struct JobUid {
    uid: u32,
    sandbox: Arc<Sandbox>,
}

impl JobUid {
    /// The host uid.
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

impl Drop for JobUid {
    fn drop(&mut self) {
        self.sandbox
            .in_use
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.uid);
    }
}

/// Where a job's parts are on the host.
#[derive(Debug)]
pub struct JobPaths<'a> {
    /// The job's directory.
    pub dir: &'a Path,
    /// Its home (`<dir>/home`).
    pub home: &'a Path,
    /// Its `passwd` and `group` (`<dir>/etc`).
    pub etc: &'a Path,
    /// Each volume's directory.
    pub volumes: &'a BTreeMap<String, PathBuf>,
    /// Its build root.
    pub root: &'a JobRoot,
}

impl Sandbox {
    /// Prepares the arguments of `config` for this host.
    pub fn new(config: SandboxConfig) -> Sandbox {
        let mut link_args: Vec<OsString> = Vec::new();
        let mut hide_args: Vec<OsString> = Vec::new();
        let mut host_dirs = Vec::new();
        let mut bound = Vec::new();
        for path in &config.host_paths {
            let Ok(meta) = std::fs::symlink_metadata(path) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(path) {
                    push(
                        &mut link_args,
                        ["--symlink".as_ref(), target.as_os_str(), path.as_os_str()],
                    );
                }
            } else {
                host_dirs.push(path.clone());
                bound.push(std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()));
            }
        }
        for path in &config.hide {
            let Ok(real) = std::fs::canonicalize(path) else {
                continue;
            };
            if !bound.iter().any(|b| real.starts_with(b)) {
                continue;
            }
            if real.is_dir() {
                push(&mut hide_args, ["--tmpfs".as_ref(), real.as_os_str()]);
                push(&mut hide_args, ["--remount-ro".as_ref(), real.as_os_str()]);
            } else {
                push(
                    &mut hide_args,
                    ["--ro-bind".as_ref(), "/dev/null".as_ref(), real.as_os_str()],
                );
            }
        }
        let per_job_uid = rustix::process::geteuid().is_root();
        if per_job_uid {
            // Its mount point; a failure shows in the probe.
            let _ = std::fs::create_dir_all(STAGE);
        }
        Sandbox {
            per_job_uid,
            config,
            host_dirs,
            link_args,
            hide_args,
            in_use: Mutex::new(BTreeSet::new()),
        }
    }

    /// The build root of a job of `arch`: its configured root, else the host's directories;
    /// writable (overlays) when the server is root.
    pub fn job_root(&self, arch: Option<&str>) -> JobRoot {
        match arch.and_then(|arch| self.config.roots.get(arch)) {
            Some(root) => JobRoot {
                lowers: vec![root.clone()],
                whole: true,
                writable: self.per_job_uid,
            },
            None => JobRoot {
                lowers: self.host_dirs.clone(),
                whole: false,
                writable: self.per_job_uid,
            },
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Whether jobs run as uids of their own (the server is root).
    pub fn per_job_uid(&self) -> bool {
        self.per_job_uid
    }

    /// A free uid of the range for one job; none when the server is not root.
    ///
    /// # Errors
    /// When every uid of the range is in use.
    pub fn allocate(self: &Arc<Self>) -> Result<Option<JobUid>, SandboxError> {
        if !self.per_job_uid {
            return Ok(None);
        }
        let mut in_use = self.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        let first = self.config.first_uid;
        let end = first.saturating_add(self.config.uids);
        let uid = (first..end)
            .find(|uid| !in_use.contains(uid))
            .ok_or(SandboxError::NoFreeUid { first, end })?;
        in_use.insert(uid);
        Ok(Some(JobUid {
            uid,
            sandbox: Arc::clone(self),
        }))
    }

    /// The command that runs `step` of the job at `paths` in the sandbox, as `uid`.
    ///
    /// # Errors
    /// When the step asks for network and the engine gives none, or a path is not in the job's
    /// directory.
    pub fn command(
        &self,
        step: &StepPlan,
        paths: &JobPaths<'_>,
        uid: Option<u32>,
    ) -> Result<Command, SandboxError> {
        if step.network && self.config.network == Network::None {
            return Err(SandboxError::NoNetwork {
                step: step.name.clone(),
            });
        }
        // A root server's sandbox reaches the job's directory through STAGE (see the module's
        // documentation); a non-root one through its real path.
        let source = |path: &Path| -> Result<PathBuf, SandboxError> {
            if uid.is_none() {
                return Ok(path.to_owned());
            }
            path.strip_prefix(paths.dir)
                .map(|rest| Path::new(STAGE).join(rest))
                .map_err(|_| SandboxError::OutsideJob {
                    path: path.to_owned(),
                })
        };
        let limits = &self.config.limits;
        let memory = step.memory.unwrap_or(limits.memory_mib << 20);
        let mut args: Vec<OsString> = Vec::new();
        let mut program: OsString = "prlimit".into();
        let root = paths.root;
        if let Some(message) = root.layer_error() {
            return Err(SandboxError::Root(message));
        }
        if let Some(missing) = root.lowers.iter().find(|l| root.whole && !l.is_dir()) {
            return Err(SandboxError::Root(format!(
                "{} is not a directory",
                missing.display()
            )));
        }
        let overlays = uid.is_some() && root.writable;
        if let Some(uid) = uid {
            program = "unshare".into();
            push(
                &mut args,
                [
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    "/bin/sh",
                    "-c",
                    MOUNT_SCRIPT,
                    "omni-sandbox",
                ],
            );
            args.push(paths.dir.into());
            args.push(STAGE.into());
            if overlays {
                args.push(root.lowers.len().to_string().into());
                args.extend(root.lowers.iter().map(OsString::from));
            } else {
                args.push("0".into());
            }
            let uid = uid.to_string();
            push(
                &mut args,
                [
                    "setpriv",
                    "--reuid",
                    &uid,
                    "--regid",
                    &uid,
                    "--clear-groups",
                    "--",
                    "prlimit",
                ],
            );
        }
        args.extend(
            [
                format!("--as={memory}"),
                format!("--cpu={}", limits.cpu_seconds),
                format!("--nproc={}", limits.processes),
                format!("--fsize={}", limits.file_size_mib << 20),
                "--core=0".to_owned(),
                "--".to_owned(),
            ]
            .map(OsString::from),
        );
        args.push(self.config.bwrap.clone().into());
        let build = step.user.unwrap_or(BUILD_UID).to_string();
        push(
            &mut args,
            [
                "--die-with-parent",
                "--new-session",
                "--unshare-user",
                "--disable-userns",
                "--uid",
                &build,
                "--gid",
                &build,
                "--unshare-ipc",
                "--unshare-pid",
                "--unshare-uts",
                "--hostname",
                "omni",
                "--unshare-cgroup-try",
            ],
        );
        if !(step.network && self.config.network == Network::Host) {
            args.push("--unshare-net".into());
        }
        // The root first: the mounts after it go over it.
        let layer = |index: usize, args: &mut Vec<OsString>, at: &Path| {
            if overlays {
                let merged = Path::new(STAGE).join(JobRoot::merged(index));
                let how = if step.read_only_root {
                    "--ro-bind"
                } else {
                    "--bind"
                };
                push(args, [how.as_ref(), merged.as_os_str(), at.as_os_str()]);
            } else {
                let lower = &root.lowers[index];
                push(
                    args,
                    ["--ro-bind".as_ref(), lower.as_os_str(), at.as_os_str()],
                );
            }
        };
        if root.whole {
            layer(0, &mut args, Path::new("/"));
        } else {
            for (index, dir) in root.lowers.iter().enumerate() {
                layer(index, &mut args, dir);
            }
            args.extend(self.link_args.iter().cloned());
            args.extend(self.hide_args.iter().cloned());
            if overlays {
                let var = Path::new(STAGE).join(crate::root::ROOT_DIR).join("var");
                push(
                    &mut args,
                    ["--bind".as_ref(), var.as_os_str(), "/var".as_ref()],
                );
            }
        }
        let passwd = source(&paths.etc.join("passwd"))?;
        let group = source(&paths.etc.join("group"))?;
        push(
            &mut args,
            [
                "--ro-bind".as_ref(),
                passwd.as_os_str(),
                "/etc/passwd".as_ref(),
            ],
        );
        push(
            &mut args,
            [
                "--ro-bind".as_ref(),
                group.as_os_str(),
                "/etc/group".as_ref(),
            ],
        );
        push(
            &mut args,
            [
                "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp",
            ],
        );
        let home = source(paths.home)?;
        push(
            &mut args,
            ["--bind".as_ref(), home.as_os_str(), HOME.as_ref()],
        );
        // Shorter paths first: `/work` before a volume mounted at `/work/out`.
        let mut mounts: Vec<_> = step.mounts.iter().collect();
        mounts.sort_by_key(|m| m.path.len());
        for mount in mounts {
            let dir = paths
                .volumes
                .get(&mount.volume)
                .ok_or_else(|| SandboxError::NoVolume {
                    volume: mount.volume.clone(),
                })?;
            let dir = source(dir)?;
            let how = if mount.read_only {
                "--ro-bind"
            } else {
                "--bind"
            };
            push(
                &mut args,
                [how.as_ref(), dir.as_os_str(), mount.path.as_ref()],
            );
        }
        push(
            &mut args,
            [
                "--chdir",
                step.working_dir.as_deref().unwrap_or(HOME),
                "--clearenv",
            ],
        );
        let mut env: Vec<(&str, &str)> = vec![
            ("HOME", HOME),
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("LANG", "C.UTF-8"),
        ];
        for (key, value) in &step.env {
            env.retain(|(k, _)| k != key);
            env.push((key, value));
        }
        for (key, value) in env {
            push(&mut args, ["--setenv", key, value]);
        }
        args.push("--".into());
        args.extend(step.argv.iter().map(OsString::from));
        let mut command = Command::new(program);
        // What the step's environment holds never reaches the wrappers that run as root.
        command
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        Ok(command)
    }
}

fn push<S: AsRef<std::ffi::OsStr>>(args: &mut Vec<OsString>, items: impl IntoIterator<Item = S>) {
    args.extend(items.into_iter().map(|s| s.as_ref().to_owned()));
}

/// The build user's `/etc/passwd` and `/etc/group`.
pub fn write_etc(etc: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(etc)?;
    std::fs::write(
        etc.join("passwd"),
        format!(
            "root:x:0:0:root:/root:/bin/sh\nomni:x:{BUILD_UID}:{BUILD_UID}:Omni build user:{HOME}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
    )?;
    std::fs::write(
        etc.join("group"),
        format!("root:x:0:\nomni:x:{BUILD_UID}:\nnogroup:x:65534:\n"),
    )
}
