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
//! has no network (a loopback of its own) unless it asks for it ([`NETWORK_ANNOTATION`]); one
//! that asks gets a stack of its own through slirp4netns ([`Network::User`], the default, see
//! [`UserNetwork`]) that cannot reach the host's loopback, or fails before it starts
//! ([`Network::None`]), or shares the host's ([`Network::Host`]). It cannot make user namespaces (`--disable-userns`),
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
use std::io::Write as _;
use std::os::fd::{AsRawFd as _, OwnedFd};
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
        "step {step} asks for network (annotation {NETWORK_ANNOTATION}), and this engine gives steps none (`network = \"none\"` in its [engines.sandbox]; \"user\" gives such a step a network of its own through slirp4netns)"
    )]
    NoNetwork {
        /// The step.
        step: String,
    },
    /// The pipes between bubblewrap and the server that set up a step's network.
    #[error("cannot make a pipe for the step's network: {0}")]
    Pipe(#[source] std::io::Error),
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
    /// A network stack of the step's own through slirp4netns ([`UserNetwork`]): what the host
    /// reaches on its other addresses, not the host's loopback.
    #[default]
    User,
    /// Nothing: such a step fails before it starts, saying why.
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
    /// The slirp4netns binary (1.2 or later), for `network = "user"`.
    pub slirp4netns: PathBuf,
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
            slirp4netns: PathBuf::from("slirp4netns"),
            network: Network::User,
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
    /// Where the host's `/etc/resolv.conf` really is (it may be a link into `/run`): a networked
    /// step's own resolv.conf is bound there when its root is the host's.
    resolv_conf: PathBuf,
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
            resolv_conf: resolve_links(Path::new("/"), Path::new("/etc/resolv.conf")),
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

    /// The command that runs `step` of the job at `paths` in the sandbox, as `uid`, and the
    /// user-mode network to start once it is spawned ([`UserNetwork::start`]) when the step has
    /// one.
    ///
    /// # Errors
    /// When the step asks for network and the engine gives none, or a path is not in the job's
    /// directory.
    pub fn command(
        &self,
        step: &StepPlan,
        paths: &JobPaths<'_>,
        uid: Option<u32>,
    ) -> Result<StepCommand, SandboxError> {
        let network = if step.network {
            self.config.network
        } else {
            Network::None
        };
        if step.network && network == Network::None {
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
        if network != Network::Host {
            args.push("--unshare-net".into());
        }
        // bubblewrap reports the sandbox's pid on `info` and waits on `block` before it runs the
        // step's command, while slirp4netns sets the network up (UserNetwork::start).
        let user = if network == Network::User {
            let (info, info_child) = std::io::pipe().map_err(SandboxError::Pipe)?;
            let (block_child, block) = std::io::pipe().map_err(SandboxError::Pipe)?;
            push(
                &mut args,
                [
                    "--info-fd".to_owned(),
                    info_child.as_raw_fd().to_string(),
                    "--block-fd".to_owned(),
                    block_child.as_raw_fd().to_string(),
                ],
            );
            Some((
                UserNetwork {
                    slirp4netns: self.config.slirp4netns.clone(),
                    root_server: uid.is_some(),
                    label: paths.dir.as_os_str().to_owned(),
                    info: Some(info.into()),
                    block: Some(block.into()),
                },
                [OwnedFd::from(info_child), OwnedFd::from(block_child)],
            ))
        } else {
            None
        };
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
        if network == Network::User {
            // The host's resolver may be a loopback address the step cannot reach; slirp4netns
            // answers at 10.0.2.3 by asking it.
            let resolv = source(&paths.etc.join("resolv.conf"))?;
            let at = if root.whole {
                resolve_links(&root.lowers[0], Path::new("/etc/resolv.conf"))
            } else {
                self.resolv_conf.clone()
            };
            push(
                &mut args,
                ["--ro-bind".as_ref(), resolv.as_os_str(), at.as_os_str()],
            );
        }
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
        command.args(args).env_clear().env("PATH", SYSTEM_PATH);
        let network = user.map(|(network, child_ends)| {
            pass_fds(&mut command, child_ends);
            network
        });
        Ok(StepCommand { command, network })
    }
}

/// A step's command ([`Sandbox::command`]).
#[derive(Debug)]
pub struct StepCommand {
    /// What to spawn; drop it once spawned (it holds the child's ends of the network's pipes).
    pub command: Command,
    /// The step's user-mode network, to start once the command is spawned.
    pub network: Option<UserNetwork>,
}

/// Keeps `fds` open across `exec` in the child of `command` (they are close-on-exec here, so
/// no other child of the server inherits them, nor a step of another job), and closes them
/// here when `command` is dropped.
fn pass_fds<const N: usize>(command: &mut Command, fds: [OwnedFd; N]) {
    let hook = move || {
        for fd in &fds {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        }
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before `exec` and makes only `fcntl` calls on
    // descriptors it owns, which are async-signal-safe; it neither allocates nor takes locks.
    // The standard library has no safe way to hand a child a descriptor other than 0, 1 and 2.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(hook);
    }
}

/// The address slirp4netns gives the step's resolver (`nameserver` of its resolv.conf).
pub const SLIRP_DNS: &str = "10.0.2.3";

/// User-mode networking for one step: `slirp4netns` attached to the step's network namespace.
///
/// Why slirp4netns rather than pasta: Debian 12's slirp4netns (1.2.0, with libslirp 4.7) is
/// the stack rootless Podman and rootlesskit use by default, with the options this needs
/// (`--disable-host-loopback`, `--ready-fd`, `--exit-fd`, `--enable-sandbox`,
/// `--enable-seccomp`); Debian 12's passt/pasta is a 2023 snapshot from before its options
/// for keeping the host's loopback out settled.
///
/// How: bubblewrap starts with `--unshare-net --info-fd --block-fd`; [`UserNetwork::start`]
/// reads the sandbox's pid from the info pipe, waits until bubblewrap has set up the
/// namespace's loopback (its uid map is written next), starts slirp4netns on that pid's network
/// namespace (by its path, `/proc/<pid>/ns/net`; `--configure` brings up `tap0` as 10.0.2.100/24 with 10.0.2.2 as gateway,
/// `--mtu=65520`), waits for its ready pipe, and only then releases the block pipe, so the
/// step's command starts with its network up. slirp4netns runs as the server's user, root:
/// the job's uid cannot join the namespace (it has no capability in the init user namespace,
/// and slirp4netns's `--userns-path` needs uid 0 mapped in the sandbox's user namespace, where
/// bubblewrap maps the job's uid alone); `--enable-sandbox` then drops every capability but
/// `CAP_NET_BIND_SERVICE` and leaves it a mount namespace of `/etc` and `/run` alone, and
/// `--enable-seccomp` a syscall filter. A server that is not root gets no user-mode network.
/// What the step reaches: outside addresses as the host would (connections are made by
/// slirp4netns, a process of the host); not the host's loopback (`--disable-host-loopback` refuses 10.0.2.2, and the step's
/// 127.0.0.1 is its own). DNS: the step's `/etc/resolv.conf` names 10.0.2.3, where slirp4netns
/// forwards queries to the host's first resolver, also when that is systemd-resolved's stub
/// (127.0.0.53), which the step could not reach itself; when it is another loopback address
/// the step gets no DNS (see [`loopback_resolver`]) and its log says why. slirp4netns ends with
/// the step: [`Slirp::stop`] closes its exit pipe, and a server that dies closes it too.
#[derive(Debug)]
pub struct UserNetwork {
    slirp4netns: PathBuf,
    /// The server is root (slirp4netns can join the sandbox's network namespace).
    root_server: bool,
    /// The job's directory, in slirp4netns's environment (`OMNI_JOB_DIR`) so that it can be
    /// found.
    label: OsString,
    info: Option<OwnedFd>,
    block: Option<OwnedFd>,
}

/// A running slirp4netns ([`UserNetwork::start`]).
#[derive(Debug)]
pub struct Slirp {
    child: tokio::process::Child,
    exit: Option<OwnedFd>,
    /// What the step's log should say about its network (no DNS, and why), if anything.
    pub note: Option<String>,
}

impl Slirp {
    /// Ends slirp4netns (closing its exit pipe) and waits until it has.
    pub async fn stop(mut self) {
        drop(self.exit.take());
        let _ = self.child.wait().await;
    }
}

impl UserNetwork {
    /// Attaches slirp4netns to the sandbox whose command was just spawned and lets the step's
    /// command run once its network is up.
    ///
    /// # Errors
    /// Why the network could not be set up (the sandbox ended first, slirp4netns is missing or
    /// failed, with what it printed). The caller kills the sandbox and waits for it before it
    /// drops this (whose block pipe, once closed, would let the command run).
    pub async fn start(&mut self) -> Result<Slirp, String> {
        use tokio::io::AsyncReadExt;
        let info = self.info.take().ok_or("the network was started already")?;
        let mut info = tokio::net::unix::pipe::Receiver::from_owned_fd(info)
            .map_err(|e| format!("bubblewrap's info pipe: {e}"))?;
        let mut said = Vec::new();
        while !said.contains(&b'}') {
            let mut chunk = [0; 512];
            match info.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    return Err(
                        "the sandbox ended before its network was set up (bubblewrap's message is in the step's log)"
                            .to_owned(),
                    );
                }
                Ok(n) => said.extend_from_slice(&chunk[..n]),
            }
        }
        #[derive(Deserialize)]
        struct Info {
            #[serde(rename = "child-pid")]
            child_pid: u32,
        }
        let pid = serde_json::from_slice::<Info>(&said)
            .map_err(|e| {
                format!(
                    "bubblewrap's info ({}) names no child-pid: {e}",
                    String::from_utf8_lossy(&said)
                )
            })?
            .child_pid;
        // bubblewrap's child sets up its loopback, then writes its uid map (bubblewrap not
        // setuid, as Debian ships it): slirp4netns, which brings `lo` up too, must not start
        // before, or bubblewrap fails ("loopback: Failed RTM_NEWADDR").
        let map = format!("/proc/{pid}/uid_map");
        loop {
            match std::fs::read_to_string(&map) {
                Ok(text) if !text.trim().is_empty() => break,
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
                Err(e) => {
                    return Err(format!(
                        "the sandbox ended before its network was set up ({map}: {e}; bubblewrap's message is in the step's log)"
                    ));
                }
            }
        }
        let (ready, ready_child) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (exit_child, exit) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        // A missing slirp4netns is told apart from one that fails (setpriv runs it as root).
        let slirp4netns = which(&self.slirp4netns).ok_or_else(|| {
            format!(
                "{} is not installed (apt-get install slirp4netns, or `make setup`), and a step with network needs it; or set `network` in the engine's [engines.sandbox] to \"host\" or \"none\"",
                self.slirp4netns.display()
            )
        })?;
        if !self.root_server {
            return Err("user-mode networking needs a server that runs as root (slirp4netns joins the step's network namespace as root and then drops every capability; the sandbox maps one uid, so it cannot enter the step's user namespace as it does for rootless Podman); set `network` in the engine's [engines.sandbox] to \"host\" or \"none\"".to_owned());
        }
        let mut args: Vec<OsString> = Vec::new();
        let program: OsString = slirp4netns.into();
        let resolver = loopback_resolver();
        if resolver.is_some() {
            args.push("--disable-dns".into());
        }
        push(
            &mut args,
            [
                "--configure".to_owned(),
                "--mtu=65520".to_owned(),
                "--disable-host-loopback".to_owned(),
                "--enable-sandbox".to_owned(),
                "--enable-seccomp".to_owned(),
                format!("--ready-fd={}", ready_child.as_raw_fd()),
                format!("--exit-fd={}", exit_child.as_raw_fd()),
                // By path: given a pid, slirp4netns would first join that process's user
                // namespace, which bubblewrap may have replaced already by the nested one of
                // `--disable-userns`, where it has no say over the network namespace.
                "--netns-type=path".to_owned(),
                format!("/proc/{pid}/ns/net"),
                "tap0".to_owned(),
            ],
        );
        let mut command = Command::new(&program);
        command
            .args(&args)
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .env("OMNI_JOB_DIR", &self.label)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        pass_fds(
            &mut command,
            [OwnedFd::from(ready_child), OwnedFd::from(exit_child)],
        );
        let spawned = command.spawn();
        drop(command);
        let mut child = spawned.map_err(|e| format!("cannot run {program:?}: {e}"))?;
        let mut ready = tokio::net::unix::pipe::Receiver::from_owned_fd(ready.into())
            .map_err(|e| format!("slirp4netns's ready pipe: {e}"))?;
        let mut byte = [0; 1];
        if !matches!(ready.read(&mut byte).await, Ok(1)) {
            let mut message = Vec::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_end(&mut message).await;
            }
            let _ = child.wait().await;
            let message = String::from_utf8_lossy(&message);
            let message = message.trim().replace('\n', "; ");
            let hint = if message.contains("/dev/net/tun") {
                " (the job's uid must be able to open /dev/net/tun: Debian's udev makes it 0666; `chmod 0666 /dev/net/tun`, which `make setup` does)"
            } else {
                ""
            };
            return Err(format!(
                "slirp4netns could not set up the step's network: {message}{hint}"
            ));
        }
        // Its stderr is not read from here on: it prints little, well under a pipe's buffer,
        // and only while starting.
        drop(child.stderr.take());
        let block = self.block.take().ok_or("the network was started already")?;
        std::fs::File::from(block)
            .write_all(b"1")
            .map_err(|e| format!("cannot release the sandbox: {e}"))?;
        Ok(Slirp {
            child,
            exit: Some(exit.into()),
            note: resolver.map(|addr| {
                format!(
                    "[omni] this step has network but no DNS: the host's resolver is {addr}, a loopback address, and forwarding {SLIRP_DNS} to it would open every service on it to the step; name a resolver that is not on the host's loopback (or 127.0.0.53) in the host's /etc/resolv.conf"
                )
            }),
        })
    }
}

/// The PATH of the wrappers the server runs as root, and of slirp4netns.
const SYSTEM_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// `program` as a path: itself when it names a directory, else the first match on
/// [`SYSTEM_PATH`] that is a file.
fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_owned());
    }
    SYSTEM_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// `path` inside the tree at `base` with its symbolic links followed (absolute ones from
/// `base`), also where they lead nowhere; the result is a path inside the tree.
fn resolve_links(base: &Path, path: &Path) -> PathBuf {
    let mut path = path.to_owned();
    for _ in 0..16 {
        let inside = base.join(path.strip_prefix("/").unwrap_or(&path));
        let Ok(target) = std::fs::read_link(&inside) else {
            break;
        };
        path = match path.parent() {
            Some(parent) if target.is_relative() => parent.join(target),
            _ => target,
        };
    }
    // `/etc/../run/x` as `/run/x`: bubblewrap makes the mount point.
    let mut plain = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                plain.pop();
            }
            std::path::Component::CurDir => {}
            other => plain.push(other),
        }
    }
    plain
}

/// The host's first IPv4 resolver (the one libslirp forwards 10.0.2.3 to) when it is a
/// loopback address other than systemd-resolved's stub, 127.0.0.53.
///
/// libslirp forwards every connection to 10.0.2.3, of any protocol and port, to that address:
/// were it 127.0.0.1, the step would reach every service listening on the host's 127.0.0.1
/// through 10.0.2.3. 127.0.0.53 is safe to forward to: nothing but the stub listens on it.
fn loopback_resolver() -> Option<std::net::Ipv4Addr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    let first = text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse::<std::net::Ipv4Addr>().ok())
            .flatten()
    })?;
    (first.is_loopback() && first != std::net::Ipv4Addr::new(127, 0, 0, 53)).then_some(first)
}

fn push<S: AsRef<std::ffi::OsStr>>(args: &mut Vec<OsString>, items: impl IntoIterator<Item = S>) {
    args.extend(items.into_iter().map(|s| s.as_ref().to_owned()));
}

/// The build user's `/etc/passwd` and `/etc/group`, and a networked step's `/etc/resolv.conf`.
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
    )?;
    std::fs::write(etc.join("resolv.conf"), format!("nameserver {SLIRP_DNS}\n"))
}
