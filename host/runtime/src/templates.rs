//! Templates served to plugins: the files of `templates/<task>/`, read through a cache that
//! checks each file's size and modification time on every read, so an operator's edit takes
//! effect on the next call without a reload or a watcher race.
//!
//! A task's files together are one versioned set ([`TemplateSet`]): what they are now, named
//! by a digest of their names and texts. A job records the digest of the set at its
//! submission, and a set that has changed since is rendered from its kept copy
//! (`crate::versions`), so the job is rendered by exactly the templates it was accepted with.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// The largest template file served, in bytes.
pub const MAX_TEMPLATE_BYTES: u64 = 1 << 20;

/// The templates root (`templates/`), one directory per task.
#[derive(Debug)]
pub struct Templates {
    root: PathBuf,
    cache: RwLock<HashMap<(Arc<str>, String), Cached>>,
    /// Each task's set as last read.
    sets: RwLock<HashMap<Arc<str>, ReadSet>>,
}

/// A set and the names and stamps of its files when it was read.
type ReadSet = (Vec<(String, Stamp)>, Arc<TemplateSet>);

#[derive(Debug, Clone)]
struct Cached {
    stamp: Stamp,
    text: Arc<str>,
}

/// What tells one version of a template file from another: its modification time and length
/// (an edit within the filesystem's time granularity that keeps the length is not seen; editors
/// and `cp` change one or the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    modified: SystemTime,
    len: u64,
}

impl Templates {
    /// Templates under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            cache: RwLock::default(),
            sets: RwLock::default(),
        }
    }

    /// The templates root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The text of `templates/<task>/<name>`, or `None` when it does not exist, is not a plain
    /// file name in that directory (no `/`, `..` or hidden files), is larger than
    /// [`MAX_TEMPLATE_BYTES`] or is not UTF-8.
    pub fn get(&self, task: &Arc<str>, name: &str) -> Option<Arc<str>> {
        self.get_stamped(task, name).0
    }

    /// As [`Templates::get`], with the file's [`Stamp`] as it was before the read (`None` when
    /// there is no file to serve): a later [`Templates::stamp`] that differs means the text
    /// served may be out of date.
    pub(crate) fn get_stamped(
        &self,
        task: &Arc<str>,
        name: &str,
    ) -> (Option<Arc<str>>, Option<Stamp>) {
        let Some(stamp) = self.stamp(task, name) else {
            return (None, None);
        };
        let key = (Arc::clone(task), name.to_owned());
        if let Some(hit) = self.read_cache().get(&key)
            && hit.stamp == stamp
        {
            return (Some(Arc::clone(&hit.text)), Some(stamp));
        }
        let path = self.root.join(&**task).join(name);
        let Some(text) = std::fs::read_to_string(&path).ok() else {
            return (None, Some(stamp));
        };
        let text: Arc<str> = text.into();
        let entry = Cached {
            stamp,
            text: Arc::clone(&text),
        };
        self.cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, entry);
        (Some(text), Some(stamp))
    }

    /// The modification time and length of `templates/<task>/<name>`, or `None` when
    /// [`Templates::get`] would not serve it whatever its content.
    pub(crate) fn stamp(&self, task: &str, name: &str) -> Option<Stamp> {
        if !is_plain_file_name(task) || !is_plain_file_name(name) {
            return None;
        }
        let meta = std::fs::metadata(self.root.join(task).join(name))
            .ok()
            .filter(|m| m.is_file() && m.len() <= MAX_TEMPLATE_BYTES)?;
        Some(Stamp {
            modified: meta.modified().ok()?,
            len: meta.len(),
        })
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, HashMap<(Arc<str>, String), Cached>> {
        self.cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The files of one task's templates directory at one time, by name, and their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSet {
    /// The sha256, hex, of every file's name and text in name order (each as its length in
    /// bytes, 8 bytes little-endian, then its bytes): equal sets have equal digests, and a file
    /// added, removed, renamed or edited makes another.
    pub digest: String,
    /// The files [`Templates::get`] would serve, by name.
    pub files: BTreeMap<String, Arc<str>>,
}

impl TemplateSet {
    /// The set of `files`, with its digest.
    pub fn new(files: BTreeMap<String, Arc<str>>) -> Self {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        for (name, text) in &files {
            for part in [name.as_bytes(), text.as_bytes()] {
                hasher.update((part.len() as u64).to_le_bytes());
                hasher.update(part);
            }
        }
        TemplateSet {
            digest: hex::encode(hasher.finalize()),
            files,
        }
    }

    /// The text of file `name`, as [`Templates::get`] served it when the set was read.
    pub fn get(&self, name: &str) -> Option<&Arc<str>> {
        self.files.get(name)
    }
}

impl Templates {
    /// The set of `task`'s templates as they are now: every file [`Templates::get`] would
    /// serve (plain names, at most [`MAX_TEMPLATE_BYTES`], UTF-8; others are left out, as a
    /// plugin could not read them either). A task without a directory has the empty set. While
    /// the directory's names and each file's stamp are those of the last read, that read's set
    /// is answered (a listing and a `stat` a file, no hashing).
    pub fn set(&self, task: &Arc<str>) -> Arc<TemplateSet> {
        let mut stamps: Vec<(String, Stamp)> = Vec::new();
        if is_plain_file_name(task)
            && let Ok(entries) = std::fs::read_dir(self.root.join(&**task))
        {
            for entry in entries.flatten() {
                if let Some(name) = entry.file_name().to_str()
                    && let Some(stamp) = self.stamp(task, name)
                {
                    stamps.push((name.to_owned(), stamp));
                }
            }
        }
        stamps.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some((seen, set)) = self
            .sets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(task)
            && *seen == stamps
        {
            return Arc::clone(set);
        }
        let mut files = BTreeMap::new();
        for (name, _) in &stamps {
            if let Some(text) = self.get(task, name) {
                files.insert(name.clone(), text);
            }
        }
        let set = Arc::new(TemplateSet::new(files));
        self.sets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(Arc::clone(task), (stamps, Arc::clone(&set)));
        set
    }
}

/// Whether `name` is a single plain path component: not empty, no separators, not hidden.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_files_of_the_task_and_nothing_outside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rpm")).unwrap();
        std::fs::write(dir.path().join("rpm/job.yaml"), "a").unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        let t = Templates::new(dir.path());
        let rpm: Arc<str> = "rpm".into();
        assert_eq!(t.get(&rpm, "job.yaml").as_deref(), Some("a"));
        assert_eq!(t.get(&rpm, "missing.yaml"), None);
        assert_eq!(t.get(&rpm, "../secret"), None);
        assert_eq!(t.get(&"..".into(), "secret"), None);
        assert_eq!(t.get(&rpm, ".hidden"), None);
    }

    #[test]
    fn a_set_is_every_file_served_and_its_digest_changes_with_any_of_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rpm")).unwrap();
        std::fs::write(dir.path().join("rpm/job.yaml"), "job").unwrap();
        std::fs::write(dir.path().join("rpm/settings.yaml"), "a: 1").unwrap();
        std::fs::write(dir.path().join("rpm/.hidden"), "no").unwrap();
        std::fs::write(dir.path().join("rpm/binary"), [0xff, 0xfe]).unwrap();
        let t = Templates::new(dir.path());
        let rpm: Arc<str> = "rpm".into();
        let first = t.set(&rpm);
        let names: Vec<&str> = first.files.keys().map(String::as_str).collect();
        assert_eq!(names, ["job.yaml", "settings.yaml"]);
        assert_eq!(first.get("job.yaml").map(|t| &**t), Some("job"));
        assert_eq!(first.digest.len(), 64);
        assert_eq!(t.set(&rpm), first, "the same files, the same set");
        assert!(
            Arc::ptr_eq(&t.set(&rpm), &t.set(&rpm)),
            "read once while unchanged"
        );
        // An edit, a new file, a removal and a rename each make another digest.
        let mut seen = vec![first.digest.clone()];
        std::fs::write(dir.path().join("rpm/settings.yaml"), "a: 2").unwrap();
        seen.push(t.set(&rpm).digest.clone());
        std::fs::write(dir.path().join("rpm/extra.j2"), "").unwrap();
        seen.push(t.set(&rpm).digest.clone());
        std::fs::rename(
            dir.path().join("rpm/extra.j2"),
            dir.path().join("rpm/other.j2"),
        )
        .unwrap();
        seen.push(t.set(&rpm).digest.clone());
        std::fs::remove_file(dir.path().join("rpm/other.j2")).unwrap();
        std::fs::write(dir.path().join("rpm/settings.yaml"), "a: 1").unwrap();
        assert_eq!(t.set(&rpm).digest, first.digest, "back as it was");
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 4);
        // Moving bytes between a name and its text is another set too.
        let a = TemplateSet::new([("ab".to_owned(), Arc::from("c"))].into());
        let b = TemplateSet::new([("a".to_owned(), Arc::from("bc"))].into());
        assert_ne!(a.digest, b.digest);
        assert!(t.set(&"none".into()).files.is_empty());
        assert!(t.set(&"..".into()).files.is_empty());
    }

    #[test]
    fn an_edit_is_seen_on_the_next_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rpm")).unwrap();
        let path = dir.path().join("rpm/job.yaml");
        std::fs::write(&path, "one").unwrap();
        let t = Templates::new(dir.path());
        let rpm: Arc<str> = "rpm".into();
        assert_eq!(t.get(&rpm, "job.yaml").as_deref(), Some("one"));
        // Same mtime granularity is possible on fast filesystems: change the length too.
        std::fs::write(&path, "second").unwrap();
        assert_eq!(t.get(&rpm, "job.yaml").as_deref(), Some("second"));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(t.get(&rpm, "job.yaml"), None);
    }
}
