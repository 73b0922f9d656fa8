//! The directory backend: an object is a file under the root, at its key's path.
//!
//! A put streams into a temporary file (`.omni-tmp-<uuid>`) in the target's directory on a
//! blocking thread fed through a bounded channel, records the sha256 in the file's extended
//! attribute `user.omni.sha256`, fsyncs it, renames it over the target and fsyncs the directory:
//! a reader opens the old file or the new one, whole. A prefix is deleted by renaming its
//! directory to `.omni-trash-<uuid>` at the root (it vanishes at once) and removing that. What a
//! crash leaves of either is removed when the store is opened again.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::digest::Meter;
use crate::key::RESERVED;
use crate::{
    ArtifactError, ArtifactStore, ByteRange, ByteStream, Download, ObjectInfo, PutLimits, Sha256,
    Stored, validate_key, validate_prefix,
};

/// The extended attribute holding an object's sha256 (64 hex digits).
const SHA256_XATTR: &str = "user.omni.sha256";
/// Bytes read from a file per step of a download's stream.
const READ_CHUNK: usize = 256 * 1024;
/// Bytes written to the temporary file at once.
const WRITE_BUFFER: usize = 1024 * 1024;
/// Chunks of a body waiting for the writer thread: what a put holds in memory beyond the
/// writer's buffer.
const CHANNEL_CHUNKS: usize = 16;
const TMP: &str = ".omni-tmp-";
const TRASH: &str = ".omni-trash-";

/// Files under a root directory (the data directory's `artifacts/`).
#[derive(Debug, Clone)]
pub struct Directory {
    root: Arc<PathBuf>,
}

enum Chunk {
    Data(Bytes),
    /// The body ended: keep the file.
    Commit,
}

impl Directory {
    /// The store under `root`, made if missing; removes what a crash left behind (temporary
    /// files of puts, directories of deleted prefixes).
    ///
    /// # Errors
    /// [`ArtifactError::Io`] when the directory cannot be made or read.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ArtifactError> {
        let root = root.into();
        fs::create_dir_all(&root)
            .map_err(|e| ArtifactError::io(format!("creating {}", root.display()), e))?;
        sweep(&root).map_err(|e| ArtifactError::io(format!("cleaning {}", root.display()), e))?;
        Ok(Self {
            root: Arc::new(root),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

/// Removes temporary files and trashed directories anywhere under `dir`.
fn sweep(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type()?;
        if name.starts_with(TRASH) && kind.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else if name.starts_with(TMP) && kind.is_file() {
            fs::remove_file(entry.path())?;
        } else if kind.is_dir() {
            sweep(&entry.path())?;
        }
    }
    Ok(())
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ArtifactError> + Send + 'static,
) -> Result<T, ArtifactError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ArtifactError::io("a file task panicked", io::Error::other(e)))?
}

fn read_sha256(file: &File) -> Option<Sha256> {
    let mut buf = [0u8; 64];
    match rustix::fs::fgetxattr(file, SHA256_XATTR, &mut buf[..]) {
        Ok(64) => std::str::from_utf8(&buf).ok()?.parse().ok(),
        _ => None,
    }
}

/// Opens the regular file of `key`; a missing one, or a directory, is not found.
fn open_object(path: &Path, key: &str) -> Result<(File, u64), ArtifactError> {
    let not_found = || ArtifactError::NotFound {
        key: key.to_owned(),
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Err(not_found());
        }
        Err(e) => return Err(ArtifactError::io(format!("opening {}", path.display()), e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| ArtifactError::io(format!("reading {}", path.display()), e))?;
    if !meta.is_file() {
        return Err(not_found());
    }
    Ok((file, meta.len()))
}

/// Creates the temporary file of a put beside `target`, making its directory; tries again when
/// a delete removed the (empty) directory in between.
fn create_temp(target: &Path) -> Result<(PathBuf, File), ArtifactError> {
    let dir = target.parent().expect("a key has a parent: the root");
    let tmp = dir.join(format!("{TMP}{}", uuid::Uuid::new_v4().simple()));
    let mut tries = 0;
    loop {
        fs::create_dir_all(dir)
            .map_err(|e| ArtifactError::io(format!("creating {}", dir.display()), e))?;
        match File::options().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => tries += 1,
            Err(e) => return Err(ArtifactError::io(format!("creating {}", tmp.display()), e)),
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The writer thread of a put: writes what arrives into the temporary file, and on `Commit`
/// checks the digest, records it and renames the file into place. Anything else (the channel
/// closed early, a limit broken, an I/O error) removes the temporary file.
fn write_object(
    target: &Path,
    limits: PutLimits,
    mut chunks: mpsc::Receiver<Chunk>,
) -> Result<Stored, ArtifactError> {
    let (tmp, file) = create_temp(target)?;
    let result = (|| {
        let io_err = |e| ArtifactError::io(format!("writing {}", tmp.display()), e);
        let mut meter = Meter::new(limits);
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        loop {
            match chunks.blocking_recv() {
                Some(Chunk::Data(bytes)) => {
                    meter.update(&bytes)?;
                    out.write_all(&bytes).map_err(io_err)?;
                }
                Some(Chunk::Commit) => break,
                // The put gave up (its body failed, or it was dropped): keep nothing.
                None => {
                    return Err(ArtifactError::Body(io::Error::other(
                        "the put was abandoned",
                    )));
                }
            }
        }
        let stored = meter.finish()?;
        let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
        // A file system without user extended attributes keeps the object without its hash.
        if let Err(e) = rustix::fs::fsetxattr(
            &file,
            SHA256_XATTR,
            stored.sha256.to_string().as_bytes(),
            rustix::fs::XattrFlags::empty(),
        ) {
            tracing::debug!(error = %e, "cannot record the sha256 of {}", target.display());
        }
        file.sync_all().map_err(io_err)?;
        drop(file);
        fs::rename(&tmp, target).map_err(|e| {
            ArtifactError::io(format!("renaming {} into place", target.display()), e)
        })?;
        let dir = target.parent().expect("a key has a parent");
        sync_dir(dir).map_err(|e| ArtifactError::io(format!("syncing {}", dir.display()), e))?;
        Ok(stored)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes the empty directories from `dir` up to, not including, the root.
fn prune_empty(root: &Path, mut dir: &Path) {
    while dir != root && dir.starts_with(root) {
        if fs::remove_dir(dir).is_err() {
            return;
        }
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return,
        }
    }
}

/// Every object file under `dir`, as keys under `key_prefix`.
fn walk(dir: &Path, key_prefix: &str, out: &mut Vec<ObjectInfo>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        // Names that are not UTF-8 or are reserved were not made by a put.
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with(RESERVED) {
            continue;
        }
        let key = if key_prefix.is_empty() {
            name
        } else {
            format!("{key_prefix}/{name}")
        };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), &key, out)?;
        } else if kind.is_file() {
            let size = match entry.metadata() {
                Ok(meta) => meta.len(),
                // Deleted since read_dir: not there.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.push(ObjectInfo {
                key,
                size,
                sha256: None,
            });
        }
    }
    Ok(())
}

/// Reads `len` bytes from `file` (already at its start) as a stream of chunks, each read on a
/// blocking thread.
fn file_stream(file: File, len: u64) -> ByteStream {
    futures::stream::try_unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let want = usize::try_from(left.min(READ_CHUNK as u64)).expect("at most READ_CHUNK");
        let (file, chunk) = tokio::task::spawn_blocking(move || {
            let mut buf = BytesMut::zeroed(want);
            file.read_exact(&mut buf).map(|()| (file, buf.freeze()))
        })
        .await
        .map_err(io::Error::other)??;
        Ok(Some((chunk, (file, left - want as u64))))
    })
    .boxed()
}

#[async_trait]
impl ArtifactStore for Directory {
    fn kind(&self) -> &'static str {
        "directory"
    }

    async fn put(
        &self,
        key: &str,
        mut body: ByteStream,
        limits: PutLimits,
    ) -> Result<Stored, ArtifactError> {
        validate_key(key)?;
        let target = self.path(key);
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let writer = tokio::task::spawn_blocking(move || write_object(&target, limits, rx));
        let fed = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(ArtifactError::Body)?;
                if chunk.is_empty() {
                    continue;
                }
                if tx.send(Chunk::Data(chunk)).await.is_err() {
                    // The writer stopped (a limit, an I/O error): its answer says why.
                    return Ok(());
                }
            }
            let _ = tx.send(Chunk::Commit).await;
            Ok(())
        }
        .await;
        if let Err(e) = fed {
            drop(tx); // the writer removes its temporary file
            let _ = writer.await;
            return Err(e);
        }
        writer
            .await
            .map_err(|e| ArtifactError::io("the writer panicked", io::Error::other(e)))?
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Download, ArtifactError> {
        validate_key(key)?;
        let path = self.path(key);
        let key = key.to_owned();
        blocking(move || {
            let (mut file, size) = open_object(&path, &key)?;
            let range = match range {
                Some(range) => range.resolve(size)?,
                None => 0..size,
            };
            let sha256 = read_sha256(&file);
            file.seek(SeekFrom::Start(range.start))
                .map_err(|e| ArtifactError::io(format!("seeking {}", path.display()), e))?;
            let stream = file_stream(file, range.end - range.start);
            Ok(Download {
                size,
                range,
                sha256,
                stream,
            })
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo, ArtifactError> {
        validate_key(key)?;
        let path = self.path(key);
        let key = key.to_owned();
        blocking(move || {
            let (file, size) = open_object(&path, &key)?;
            Ok(ObjectInfo {
                sha256: read_sha256(&file),
                key,
                size,
            })
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ArtifactError> {
        let prefix = validate_prefix(prefix)?.to_owned();
        let dir = self.root.join(&prefix);
        blocking(move || {
            let mut out = Vec::new();
            walk(&dir, &prefix, &mut out)
                .map_err(|e| ArtifactError::io(format!("listing {}", dir.display()), e))?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    async fn children(&self, prefix: &str) -> Result<Vec<String>, ArtifactError> {
        let dir = self.root.join(validate_prefix(prefix)?);
        blocking(move || {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                // A prefix naming an object: it has no children.
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => return Ok(Vec::new()),
                Err(e) => return Err(ArtifactError::io(format!("listing {}", dir.display()), e)),
            };
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry
                    .map_err(|e| ArtifactError::io(format!("listing {}", dir.display()), e))?;
                // Temporary files of puts in progress (or a crash's) are no one's.
                if let Some(name) = entry.file_name().to_str()
                    && !name.starts_with(".omni-")
                {
                    names.push(name.to_owned());
                }
            }
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), ArtifactError> {
        validate_key(key)?;
        let path = self.path(key);
        let root = Arc::clone(&self.root);
        blocking(move || {
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => {
                        return Err(ArtifactError::io(format!("removing {}", path.display()), e));
                    }
                },
                // Not there, or a "directory" of other keys: no object by that key.
                _ => return Ok(()),
            }
            prune_empty(&root, path.parent().expect("a key has a parent"));
            Ok(())
        })
        .await
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, ArtifactError> {
        let prefix = validate_prefix(prefix)?;
        if prefix.is_empty() {
            return Err(ArtifactError::InvalidKey {
                key: String::new(),
                reason: "deleting everything is refused",
            });
        }
        let dir = self.root.join(prefix);
        let root = Arc::clone(&self.root);
        blocking(move || {
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() => {}
                _ => return Ok(0),
            }
            // Renamed first, so that the prefix's objects disappear at once.
            let trash = root.join(format!("{TRASH}{}", uuid::Uuid::new_v4().simple()));
            match fs::rename(&dir, &trash) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(ArtifactError::io(format!("moving {}", dir.display()), e)),
            }
            let mut gone = Vec::new();
            walk(&trash, "", &mut gone)
                .and_then(|()| fs::remove_dir_all(&trash))
                .map_err(|e| ArtifactError::io(format!("removing {}", trash.display()), e))?;
            prune_empty(&root, dir.parent().expect("a prefix has a parent"));
            Ok(gone.len() as u64)
        })
        .await
    }
}
