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
    modified: SystemTime,
    len: u64,
    text: Arc<str>,
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
        if !is_plain_file_name(task) || !is_plain_file_name(name) {
            return None;
        }
        let path = self.root.join(&**task).join(name);
        let meta = std::fs::metadata(&path)
            .ok()
            .filter(|m| m.is_file() && m.len() <= MAX_TEMPLATE_BYTES)?;
        let modified = meta.modified().ok()?;
        let key = (Arc::clone(task), name.to_owned());
        if let Some(hit) = self.read_cache().get(&key)
            && hit.modified == modified
            && hit.len == meta.len()
        {
            return Some(Arc::clone(&hit.text));
        }
        let text: Arc<str> = std::fs::read_to_string(&path).ok()?.into();
        let entry = Cached {
            modified,
            len: text.len() as u64,
            text: Arc::clone(&text),
        };
        self.cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, entry);
        Some(text)
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
