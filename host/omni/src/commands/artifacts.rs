//! `omni artifacts list JOB` and `omni artifacts get JOB [NAME...] [-o DIR]`: a job's
//! artifacts listed, and downloaded into a directory, each checked against its sha256.
//!
//! A download goes to a hidden temporary file beside its target (`.<name>.omni-part`) and is
//! renamed over it only once all of it arrived with the sha256 the server recorded, so a file
//! at an artifact's name is always that artifact, whole. Names are checked as the server checks
//! them (relative paths without `..`), so a server cannot make the client write outside the
//! directory.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use futures::StreamExt;
use omni_artifacts::Sha256;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::{print_json, print_table, success, table, text, usage};
use crate::client::{Client, Failure, Outcome, Output, Remote, Server};

/// `omni artifacts`.
#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// List a job's artifacts.
    List(ListArgs),
    /// Download a job's artifacts (all of them, or those named) into a directory; each is
    /// checked against its sha256.
    Get(GetArgs),
}

/// `omni artifacts list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The job's id.
    pub id: String,
    #[command(flatten)]
    pub remote: Remote,
}

/// `omni artifacts get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The job's id.
    pub id: String,
    /// The artifacts to download (their names, as listed); all of them without any.
    pub names: Vec<String>,
    /// The directory to write them into (made if missing); each goes to its name under it.
    #[arg(long = "dir", short = 'o', default_value = ".")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub server: Server,
}

/// Runs `omni artifacts ...`.
pub async fn artifacts(command: ArtifactsCommand) -> Outcome {
    match command {
        ArtifactsCommand::List(args) => {
            let client = Client::new(&args.remote.server)?;
            let items = all(&client, &args.id).await?;
            if args.remote.output == Output::Json {
                print_json(&json!({"items": items}));
                return success();
            }
            let mut rows = table(&["NAME", "SIZE", "SHA256", "STEP"]);
            for item in &items {
                rows.add_row(vec![
                    text(&item["name"]),
                    item["size"].as_u64().map(size).unwrap_or_default(),
                    text(&item["sha256"]),
                    text(&item["step"]),
                ]);
            }
            print_table(&rows);
            success()
        }
        ArtifactsCommand::Get(args) => get(&args).await,
    }
}

/// Every artifact of job `id`, page after page.
async fn all(client: &Client, id: &str) -> Result<Vec<Value>, Failure> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut request = client.request(
            reqwest::Method::GET,
            &format!("/v1/jobs/{}/artifacts", encode(id)),
        );
        if let Some(after) = &after {
            request = request.query(&[("after", after)]);
        }
        let page = client.json(request).await?;
        if let Some(page_items) = page["items"].as_array() {
            items.extend(page_items.iter().cloned());
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return Ok(items),
        }
    }
}

async fn get(args: &GetArgs) -> Outcome {
    let client = Client::new(&args.server)?;
    let items = all(&client, &args.id).await?;
    let chosen: Vec<&Value> = if args.names.is_empty() {
        items.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for name in &args.names {
            match items.iter().find(|item| item["name"] == name.as_str()) {
                Some(item) => chosen.push(item),
                None => {
                    return Err(usage(&format!(
                        "job {} has no artifact {name:?} (omni artifacts list {} shows them)",
                        args.id, args.id
                    )));
                }
            }
        }
        chosen
    };
    for item in chosen {
        let name = item["name"].as_str().unwrap_or_default();
        omni_artifacts::validate_key(name).map_err(|e| {
            Failure::Other(anyhow::anyhow!(
                "the server named an artifact {name:?}, which cannot be a file name here: {e}"
            ))
        })?;
        let expected: Sha256 = text(&item["sha256"]).parse().map_err(|_| {
            Failure::Other(anyhow::anyhow!(
                "the server gave artifact {name:?} no sha256"
            ))
        })?;
        let url = item["url"].as_str().map_or_else(
            || format!("/v1/jobs/{}/artifacts/{}", encode(&args.id), encode(name)),
            str::to_owned,
        );
        let target = args.dir.join(name);
        download(&client, &url, &target, expected, item["size"].as_u64()).await?;
        println!("{}", target.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Downloads `url` into `target` through a temporary file, checking the bytes' sha256; a
/// progress bar on a terminal.
async fn download(
    client: &Client,
    url: &str,
    target: &Path,
    expected: Sha256,
    size: Option<u64>,
) -> Result<(), Failure> {
    let fail = |what: String| Failure::Other(anyhow::anyhow!(what));
    let parent = target.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|e| fail(format!("cannot make {}: {e}", parent.display())))?;
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let part = parent.join(format!(".{file_name}.omni-part"));
    let response = client
        .send(client.request(reqwest::Method::GET, url))
        .await?;
    let bar = progress(size.or(response.content_length()), &file_name);
    let mut file = tokio::fs::File::create(&part)
        .await
        .map_err(|e| fail(format!("cannot write {}: {e}", part.display())))?;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut body = response.bytes_stream();
    let written: Result<(), Failure> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Failure::Unreachable(format!("{url}: {e}")))?;
            sha2::Digest::update(&mut hasher, &chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| fail(format!("cannot write {}: {e}", part.display())))?;
            if let Some(bar) = &bar {
                bar.inc(chunk.len() as u64);
            }
        }
        file.sync_all()
            .await
            .map_err(|e| fail(format!("cannot write {}: {e}", part.display())))?;
        let actual = Sha256(sha2::Digest::finalize(hasher).into());
        if actual != expected {
            return Err(fail(format!(
                "{}: the bytes' sha256 is {actual}, not the {expected} the server recorded; nothing was written",
                target.display()
            )));
        }
        Ok(())
    }
    .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Err(error) = written {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(error);
    }
    tokio::fs::rename(&part, target)
        .await
        .map_err(|e| fail(format!("cannot write {}: {e}", target.display())))
}

/// A progress bar on stderr when it is a terminal.
fn progress(size: Option<u64>, name: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match size {
        Some(size) => indicatif::ProgressBar::new(size),
        None => indicatif::ProgressBar::new_spinner(),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(name.to_owned());
    Some(bar)
}

/// A size for people: bytes, KiB, MiB, GiB.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A job id or an artifact's name as a URL path, its `/` kept.
fn encode(text: &str) -> String {
    omni_api::artifacts::url_path(text)
}
