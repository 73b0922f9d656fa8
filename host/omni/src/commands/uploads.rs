//! Files sent to `POST /v1/uploads` for a job to use: `omni submit --source`.

use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

use super::usage;
use crate::client::{Client, Failure};

/// One `--source`: the name it has in `SOURCES/` and the file to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceArg {
    /// The name (the file's own without `NAME=`).
    pub name: String,
    /// The file.
    pub path: PathBuf,
}

impl std::str::FromStr for SourceArg {
    type Err = String;

    /// `PATH`, or `NAME=PATH` to give it another name.
    fn from_str(text: &str) -> Result<Self, String> {
        let (name, path) = match text.split_once('=') {
            Some((name, path)) if !name.is_empty() && !name.contains('/') => {
                (name.to_owned(), PathBuf::from(path))
            }
            _ => {
                let path = PathBuf::from(text);
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| format!("{text:?} names no file"))?
                    .to_owned();
                (name, path)
            }
        };
        Ok(SourceArg { name, path })
    }
}

/// The sha256 of the file at `path`, read once.
async fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let read = file.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Sends the file at `path` to `domain`'s uploads, unless the domain has it already, and
/// answers its sha256. A progress bar shows on a terminal.
pub async fn upload(client: &Client, domain: &str, path: &Path) -> Result<String, Failure> {
    let unreadable = |e: std::io::Error| usage(&format!("cannot read {}: {e}", path.display()));
    let sha256 = sha256_of(path).await.map_err(unreadable)?;
    let known = client
        .send(client.request(
            Method::GET,
            &format!("/v1/uploads/{sha256}?domain={domain}"),
        ))
        .await;
    if known.is_ok() {
        return Ok(sha256);
    }
    let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let size = file.metadata().await.map_err(unreadable)?.len();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(path.display().to_string());
        bar
    });
    let counted = bar.clone();
    let stream = tokio_util::io::ReaderStream::new(file).inspect(move |chunk| {
        if let (Some(bar), Ok(chunk)) = (&counted, chunk) {
            bar.inc(chunk.len() as u64);
        }
    });
    let request = client
        .request(
            Method::POST,
            &format!("/v1/uploads?domain={domain}&sha256={sha256}"),
        )
        .header("content-type", "application/octet-stream")
        .header("content-length", size)
        .body(reqwest::Body::wrap_stream(stream));
    let sent = client.json(request).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    sent?;
    Ok(sha256)
}

/// Sends each of `sources` to `domain` and names it in `params.sources` as an upload, with
/// the file's mode.
pub async fn add_sources(
    client: &Client,
    domain: &str,
    sources: &[SourceArg],
    params: &mut Value,
) -> Result<(), Failure> {
    for source in sources {
        let mode = std::fs::metadata(&source.path)
            .map_err(|e| usage(&format!("cannot read {}: {e}", source.path.display())))?
            .permissions()
            .mode()
            & 0o777;
        let sha256 = upload(client, domain, &source.path).await?;
        if !params["sources"].is_object() {
            params["sources"] = json!({});
        }
        params["sources"][&source.name] = json!({"upload": sha256, "mode": format!("{mode:04o}")});
    }
    Ok(())
}
