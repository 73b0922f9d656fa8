//! A job's build root: what its steps see as `/`, and how it becomes writable for that job alone.
//!
//! The lower layers are the root directory the engine's configuration names for the job's arch
//! (`[engines.sandbox.roots]`, a tree the operator unpacked: a distribution's own rpm and dnf),
//! or else the host's system directories (`host_paths`). When the server is root, each layer is
//! a kernel overlayfs mount made in the step's private mount namespace before bubblewrap runs
//! (bubblewrap 0.8 has no `--overlay`): lower = the layer, upper and work in the job's
//! directory (`root/`), so what a step writes there (dnf installing BuildRequires) is the job's
//! alone, seen by its later steps, and nothing of the host changes. A root that is the host's
//! paths gets a job-private `/var` too (dnf's cache and database).
//!
//! Writing into an overlay is checked against the lower files' owners, and the host's root owns
//! them: to the job's user namespace, where only the job's uid is mapped, they belong to no one.
//! So when a step asks to run as root (`securityContext.runAsUser: 0`, the `rpm` task's `deps`
//! and `build`) with a writable root (not `readOnlyRootFilesystem` nor named by the
//! `omni.io/read-only-root` annotation, as `srpm`'s `build` is), every directory of the lower layers is made in the upper one beforehand, owned
//! by the job's uid ([`prepare`]); overlayfs takes a merged directory's owner from its upper
//! copy, so that root (the job's uid outside) may add and replace files anywhere in its own
//! root, while the lower files themselves stay unwritable. The job's `root/` is removed when
//! the run ends: only the volumes are the job's artifacts. That costs, for a root of the host's
//! `/usr`, `/etc` and `/opt` here (17,000 directories), about 9 s and 68 MB while the job runs;
//! idmapped lower layers (util-linux 2.39's `X-mount.idmap`, not in Debian 12) would cost
//! nothing.
//!
//! A server that is not root cannot mount: its steps see the layers read-only, and a step that
//! installs into the root fails (dnf says so).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Plan, Sandbox};

/// The job directory's part for its root.
pub const ROOT_DIR: &str = "root";

/// A job's build root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRoot {
    /// The lower layers, in order: one configured root, or the host's directories.
    pub lowers: Vec<PathBuf>,
    /// A configured root: its one layer is the sandbox's `/`. Otherwise each layer is mounted
    /// at its own path.
    pub whole: bool,
    /// Each layer is an overlay writable by the job (the server is root).
    pub writable: bool,
}

impl JobRoot {
    /// Why a layer cannot be an overlay's lower directory, if one cannot: mount options are
    /// separated by `,` and lower directories by `:`, and `\` escapes them.
    pub fn layer_error(&self) -> Option<String> {
        self.lowers.iter().find_map(|lower| {
            let text = lower.to_string_lossy();
            let bad = text.contains([',', ':', '\\', '\n']) || !lower.is_absolute();
            bad.then(|| {
                format!(
                    "{} cannot be an overlay layer: it must be an absolute path without `,`, `:`, `\\` or a newline",
                    lower.display()
                )
            })
        })
    }

    /// Where layer `index` is mounted, below the job's directory.
    pub fn merged(index: usize) -> PathBuf {
        Path::new(ROOT_DIR).join("merged").join(index.to_string())
    }
}

/// Makes the upper, work and mount directories of `root`'s layers under `job_dir/root`, owned
/// by `uid` where the job writes; with `owned_tree`, every directory of every lower layer is
/// made in its upper layer too, with its mode, owned by `uid` (see the module's documentation);
/// without, a whole root's top directories are (its mount points go there).
/// Returns how many directories it made.
///
/// # Errors
/// The file system's.
pub fn prepare(job_dir: &Path, root: &JobRoot, uid: u32, owned_tree: bool) -> std::io::Result<u64> {
    let base = job_dir.join(ROOT_DIR);
    let own = |path: &Path| std::os::unix::fs::chown(path, Some(uid), Some(uid));
    let mut made = 0;
    for (index, lower) in root.lowers.iter().enumerate() {
        let upper = base.join("upper").join(index.to_string());
        for dir in [
            &upper,
            &base.join("work").join(index.to_string()),
            &job_dir.join(JobRoot::merged(index)),
        ] {
            std::fs::create_dir_all(dir)?;
        }
        // The layer's own directory keeps its mode; the job owns its upper copy.
        if let Ok(meta) = std::fs::metadata(lower) {
            std::fs::set_permissions(
                &upper,
                std::fs::Permissions::from_mode(meta.mode() & 0o7777),
            )?;
        }
        own(&upper)?;
        // A whole root's top directories hold the sandbox's mount points (`/var/tmp`,
        // `/home/omni`, `/etc/passwd`), which bubblewrap makes as the job's uid when missing.
        let depth = match (owned_tree, root.whole) {
            (true, _) => usize::MAX,
            (false, true) => 1,
            (false, false) => 0,
        };
        made += copy_dirs(lower, &upper, uid, depth)?;
    }
    if !root.whole {
        let var = base.join("var");
        std::fs::create_dir_all(&var)?;
        own(&var)?;
    }
    Ok(made)
}

/// Makes under `upper` every directory below `lower` down to `depth` levels (on its file
/// system, not following links), with its mode, owned by `uid`. Directories it cannot read are
/// left out.
fn copy_dirs(lower: &Path, upper: &Path, uid: u32, depth: usize) -> std::io::Result<u64> {
    if depth == 0 {
        return Ok(0);
    }
    let device = std::fs::symlink_metadata(lower)?.dev();
    let mut pending = vec![(PathBuf::new(), 1)];
    let mut made = 0;
    while let Some((relative, level)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(lower.join(&relative)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if !meta.is_dir() || meta.dev() != device {
                continue;
            }
            let relative = relative.join(entry.file_name());
            let target = upper.join(&relative);
            match std::fs::create_dir(&target) {
                Ok(()) => made += 1,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            std::fs::set_permissions(
                &target,
                std::fs::Permissions::from_mode(meta.mode() & 0o7777),
            )?;
            std::os::unix::fs::chown(&target, Some(uid), Some(uid))?;
            if level < depth {
                pending.push((relative, level + 1));
            }
        }
    }
    Ok(made)
}

/// The build root of a job about to run `plan` in `job_dir` as `uid`, prepared ([`prepare`])
/// when it is writable: with every directory owned by the job when a step runs as root and
/// may write it.
///
/// # Errors
/// The file system's.
pub fn prepare_for(
    sandbox: &Sandbox,
    plan: &Plan,
    job_dir: &Path,
    uid: Option<u32>,
) -> std::io::Result<JobRoot> {
    let root = sandbox.job_root(plan.arch.as_deref());
    if let (true, Some(uid)) = (root.writable, uid) {
        let owned_tree = plan
            .steps
            .iter()
            .any(|s| s.user == Some(0) && !s.read_only_root);
        let started = std::time::Instant::now();
        let made = prepare(job_dir, &root, uid, owned_tree)?;
        tracing::debug!(made, elapsed = ?started.elapsed(), "a job's build root prepared");
    }
    Ok(root)
}

/// Removes the job's root (its upper layers): what the job installed there is not an artifact.
/// A failure is logged: the directory goes with the job's anyway.
pub fn remove(job_dir: &Path) {
    match std::fs::remove_dir_all(job_dir.join(ROOT_DIR)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(error = %e, "cannot remove a job's build root");
        }
        _ => {}
    }
}

/// The shell script the root-owned wrapper runs in the step's private mount namespace: binds the
/// job's directory (`$1`) at the stage (`$2`), mounts the `$3` overlay layers that follow
/// (lower directories; upper, work and mount point under the stage's `root/`), then runs the
/// rest of its arguments.
pub const MOUNT_SCRIPT: &str = r#"set -e
dir=$1 stage=$2 layers=$3
shift 3
mount --bind -- "$dir" "$stage"
i=0
while [ "$i" -lt "$layers" ]; do
  mount -t overlay overlay -o "lowerdir=$1,upperdir=$stage/root/upper/$i,workdir=$stage/root/work/$i" "$stage/root/merged/$i"
  shift
  i=$((i + 1))
done
exec "$@""#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_that_cannot_be_lower_directories() {
        let root = |path: &str| JobRoot {
            lowers: vec![PathBuf::from(path)],
            whole: true,
            writable: true,
        };
        assert_eq!(root("/srv/roots/openeuler-24.03").layer_error(), None);
        for bad in ["/srv/a,b", "/srv/a:b", "/srv/a\\b", "relative", "/a\nb"] {
            assert!(root(bad).layer_error().is_some(), "{bad}");
        }
    }

    #[test]
    fn the_upper_layer_holds_every_directory_owned_by_the_job() {
        let lower = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(lower.path().join("usr/share/doc")).unwrap();
        std::fs::write(lower.path().join("usr/file"), "x").unwrap();
        std::fs::set_permissions(
            lower.path().join("usr/share"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        let job = tempfile::tempdir().unwrap();
        let root = JobRoot {
            lowers: vec![lower.path().to_owned()],
            whole: true,
            writable: true,
        };
        let uid = rustix::process::geteuid().as_raw();
        // Without root steps, a whole root's top directories only: its mount points.
        let shallow = tempfile::tempdir().unwrap();
        assert_eq!(prepare(shallow.path(), &root, uid, false).unwrap(), 1);
        assert!(!shallow.path().join("root/upper/0/usr/share").exists());
        assert_eq!(prepare(job.path(), &root, uid, true).unwrap(), 3);
        let upper = job.path().join("root/upper/0");
        let share = std::fs::metadata(upper.join("usr/share")).unwrap();
        assert!(share.is_dir() && share.mode() & 0o777 == 0o750);
        assert!(upper.join("usr/share/doc").is_dir());
        // Directories only: the files stay in the lower layer.
        assert!(!upper.join("usr/file").exists());
        assert!(
            job.path().join("root/merged/0").is_dir() && job.path().join("root/work/0").is_dir()
        );
        remove(job.path());
        assert!(!job.path().join(ROOT_DIR).exists());
        remove(job.path());
    }
}
