//! Templates served to plugins: the files of `templates/<task>/`, read through a cache that
//! checks each file's size and modification time on every read, so an operator's edit takes
//! effect on the next call without a reload or a watcher race.

use std::collections::HashMap;
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
}

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
