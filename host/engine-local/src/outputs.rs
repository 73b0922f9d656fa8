//! What a job leaves in its output volume: the regular files under it, each attributed to the
//! step that last wrote it. The directory is looked at after each step ends and once more
//! when the job ends (files new or changed since the last look are the step's), never while a
//! step runs, and the outputs are handed out only after the job ended, when no process of it
//! is left to change them.
//!
//! Only regular files are outputs: a symbolic link (which could name a file of the host's), a
//! device, a socket or a FIFO is skipped, and the walk does not follow links into other
//! directories. A name that is not UTF-8 is skipped too (an artifact's name is text); both
//! are logged.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use omni_engine::Output;

/// What identifies one version of a file: a file rewritten in place, replaced or truncated
/// has another stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        Stamp {
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Debug, Clone)]
struct Seen {
    stamp: Stamp,
    step: Option<String>,
}

/// The files of one job's output volume, as last seen.
#[derive(Debug, Default)]
pub(crate) struct Outputs {
    files: BTreeMap<String, Seen>,
}

impl Outputs {
    /// Looks at `dir` after `step` ended (`None`: the job's end): files new or changed since
    /// the last look are `step`'s, files gone are forgotten. A missing directory has no files.
    pub(crate) fn scan(&mut self, dir: &Path, step: Option<&str>) {
        let mut now = BTreeMap::new();
        if dir.exists() {
            for entry in walkdir::WalkDir::new(dir).follow_links(false).min_depth(1) {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read part of a job's output");
                        continue;
                    }
                };
                if !entry.file_type().is_file() {
                    if !entry.file_type().is_dir() {
                        tracing::warn!(path = %entry.path().display(), "a job's output holds something that is not a regular file: it is not an artifact");
                    }
                    continue;
                }
                let Some(name) = name_of(dir, entry.path()) else {
                    tracing::warn!(path = %entry.path().display(), "a job's output holds a file whose name is not UTF-8: it is not an artifact");
                    continue;
                };
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read a file of a job's output");
                        continue;
                    }
                };
                let stamp = Stamp::of(&meta);
                let seen = match self.files.remove(&name) {
                    Some(seen) if seen.stamp == stamp => seen,
                    Some(seen) if step.is_none() => Seen { stamp, ..seen },
                    _ => Seen {
                        stamp,
                        step: step.map(str::to_owned),
                    },
                };
                now.insert(name, seen);
            }
        }
        self.files = now;
    }

    /// The files as last seen, in name order, under `dir`.
    pub(crate) fn list(&self, dir: &Path) -> Vec<Output> {
        self.files
            .iter()
            .map(|(name, seen)| Output {
                name: name.clone(),
                step: seen.step.clone(),
                path: dir.join(name),
                size: seen.stamp.size,
            })
            .collect()
    }
}

/// `path`'s name relative to `dir`, `/`-separated, when it is UTF-8.
fn name_of(dir: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(dir).ok()?;
    let parts: Option<Vec<&str>> = relative.iter().map(|part| part.to_str()).collect();
    Some(parts?.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_belong_to_the_step_that_last_wrote_them() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let mut outputs = Outputs::default();
        outputs.scan(out, Some("fetch"));
        assert!(outputs.list(out).is_empty());

        std::fs::create_dir_all(out.join("repodata")).unwrap();
        std::fs::write(out.join("a.src.rpm"), b"srpm").unwrap();
        std::fs::write(out.join("repodata/repomd.xml"), b"<repomd/>").unwrap();
        outputs.scan(out, Some("build"));

        // The next step rewrites one file, adds one, removes one, links one and makes a FIFO.
        std::fs::write(out.join("repodata/repomd.xml"), b"<repomd>2</repomd>").unwrap();
        std::fs::write(out.join("b.rpm"), b"rpm").unwrap();
        std::fs::write(out.join("gone"), b"x").unwrap();
        outputs.scan(out, Some("createrepo"));
        std::fs::remove_file(out.join("gone")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", out.join("passwd")).unwrap();
        std::os::unix::fs::symlink("/etc", out.join("etc")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(out.join("fifo"))
            .status()
            .unwrap();
        assert!(made.success());
        outputs.scan(out, None);

        let listed: Vec<(String, Option<String>, u64)> = outputs
            .list(out)
            .into_iter()
            .map(|o| {
                assert_eq!(o.path, out.join(&o.name));
                (o.name, o.step, o.size)
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("a.src.rpm".into(), Some("build".into()), 4),
                ("b.rpm".into(), Some("createrepo".into()), 3),
                ("repodata/repomd.xml".into(), Some("createrepo".into()), 18),
            ]
        );
    }

    #[test]
    fn a_missing_directory_has_no_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let mut outputs = Outputs::default();
        outputs.scan(&dir.path().join("none"), Some("build"));
        assert!(outputs.list(dir.path()).is_empty());
    }
}
