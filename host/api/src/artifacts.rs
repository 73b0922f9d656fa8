//! `GET /v1/jobs/{id}/artifacts` and `GET /v1/jobs/{id}/artifacts/{name}` (`docs/api.md`,
//! "Artifacts"): the files a job made, listed by name in pages, and each downloaded as it is
//! kept, streamed, with its sha256 as the `ETag`, byte ranges (`Range`, `If-Range`) and
//! `If-None-Match`. Whoever may see the job may read its artifacts.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use omni_artifacts::ByteRange;
use omni_store::ArtifactQuery;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::auth::{Caller, Role};
use crate::{AppState, Problem};

/// The default page size.
pub const DEFAULT_LIMIT: usize = 1000;
/// The largest page size.
pub const MAX_LIMIT: usize = 10_000;

/// A file a job made.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Artifact {
    /// Its name: its path relative to the job's output directory (`repodata/repomd.xml`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The sha256 of its bytes, lowercase hex (also its download's `ETag`).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    /// Its media type, from its name (the download's `Content-Type`).
    pub media_type: String,
    /// The step that made it (last wrote it), when the engine can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub step: Option<String>,
    /// When it was stored.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Where to download it.
    pub url: String,
}

impl Artifact {
    fn new(job: omni_store::JobId, artifact: omni_store::Artifact) -> Self {
        Artifact {
            url: format!("/v1/jobs/{job}/artifacts/{}", url_path(&artifact.name)),
            name: artifact.name,
            size: artifact.size,
            sha256: artifact.sha256,
            media_type: artifact.media_type,
            step: artifact.step,
            created_at: artifact.created_at,
        }
    }
}

/// A page of a job's artifacts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ArtifactList {
    /// The artifacts, by name (byte order).
    pub items: Vec<Artifact>,
    /// The cursor of the next page (pass it as `after`), when this one was full.
    pub next: Option<String>,
}

/// The query of a listing, read as text and checked here.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only names after this one (a page's `next`): 1 to 918 bytes.
    #[param(min_length = 1, max_length = 918)]
    after: Option<String>,
    /// At most this many (default 1000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    limit: Option<String>,
}

/// A job's artifacts, by name, in pages. Needs `viewer` in the job's domain.
#[utoipa::path(
    operation_id = "listJobArtifacts",
    get,
    path = "/v1/jobs/{id}/artifacts",
    tag = "jobs",
    params(("id" = String, Path, description = "The job's id (a v1 UUID)"), ListParams),
    responses(
        (status = 200, description = "A page of the job's artifacts", body = ArtifactList),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 404, response = crate::openapi::NotFound),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<ArtifactList>, Problem> {
    let id = crate::jobs::parse_id(&id)?;
    crate::jobs::visible_job(&state, &caller, id, Role::Viewer).await?;
    let Query(params) = params.map_err(|e| {
        Problem::bad_request(format!("the query is not valid: {}", e.body_text()), vec![])
    })?;
    let limit = match params.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Problem::bad_request(
                    format!("limit must be a number from 1 to {MAX_LIMIT}"),
                    vec![Problem::field("/query/limit", "must be from 1 to 10000")],
                )
            })?,
    };
    if let Some(after) = &params.after
        && (after.is_empty() || after.len() > omni_jobs::MAX_ARTIFACT_NAME)
    {
        let rule = format!("must be 1 to {} bytes", omni_jobs::MAX_ARTIFACT_NAME);
        return Err(Problem::bad_request(
            format!("after {rule}"),
            vec![Problem::field("/query/after", rule)],
        ));
    }
    let page = state
        .jobs
        .list_artifacts(
            id,
            &ArtifactQuery {
                after: params.after,
                limit,
            },
        )
        .await
        .map_err(Problem::from_jobs)?;
    Ok(Json(ArtifactList {
        items: page
            .items
            .into_iter()
            .map(|a| Artifact::new(id, a))
            .collect(),
        next: page.next,
    }))
}

/// Downloads one of a job's artifacts, streamed. Needs `viewer` in the job's domain.
///
/// `ETag` is the quoted sha256; `If-None-Match` with it answers 304. One byte range
/// (`Range: bytes=a-b`, `a-`, `-n`) answers 206 with `Content-Range`, or 416 when it selects
/// no byte; several ranges, or a `Range` with an `If-Range` that is not the `ETag`, answer the
/// whole file (200), as RFC 9110 allows.
#[utoipa::path(
    operation_id = "getJobArtifact",
    get,
    path = "/v1/jobs/{id}/artifacts/{name}",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The job's id (a v1 UUID)"),
        ("name" = String, Path, description = "The artifact's name (a path: its `/` may be sent as they are)"),
        ("Range" = Option<String>, Header, description = "One byte range: `bytes=a-b`, `bytes=a-` or `bytes=-n`"),
        ("If-Range" = Option<String>, Header, description = "The `ETag` the range is of"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` the caller has"),
    ),
    responses(
        (status = 200, description = "The artifact's bytes, as its media type", content_type = "*/*", body = Vec<u8>,
         headers(("ETag" = String, description = "The quoted sha256"),
                 ("Content-Disposition" = String, description = "attachment, with the file's name"),
                 ("Accept-Ranges" = String, description = "bytes"))),
        (status = 206, description = "The bytes of the range asked for", content_type = "*/*", body = Vec<u8>,
         headers(("Content-Range" = String, description = "bytes a-b/size"),
                 ("ETag" = String, description = "The quoted sha256"))),
        (status = 304, description = "The caller has it (If-None-Match)"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 404, response = crate::openapi::NotFound),
        (status = 416, description = "The range selects no byte", body = crate::Problem, content_type = "application/problem+json",
         headers(("Content-Range" = String, description = "bytes */size"))),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(crate) async fn download(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let id = crate::jobs::parse_id(&id)?;
    crate::jobs::visible_job(&state, &caller, id, Role::Viewer).await?;
    omni_jobs::check_artifact_name(&name).map_err(Problem::from_jobs)?;
    let artifact = state
        .jobs
        .get_artifact(id, &name)
        .await
        .map_err(Problem::from_jobs)?;
    let etag = format!("\"{}\"", artifact.sha256);
    if let Some(wanted) = headers.get(header::IF_NONE_MATCH)
        && etag_matches(wanted, &etag)
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        set(&mut response, header::ETAG, &etag);
        return Ok(response);
    }
    let range = match headers.get(header::RANGE) {
        Some(range) if if_range_holds(&headers, &etag) => parse_range(range),
        _ => None,
    };
    let (artifact, download) = match state.jobs.open_artifact(id, &name, range).await {
        Ok(opened) => opened,
        Err(omni_jobs::JobError::Artifacts(
            error @ omni_artifacts::ArtifactError::RangeNotSatisfiable { size, .. },
        )) => {
            let mut response = Problem::from_artifacts(error).into_response();
            set(
                &mut response,
                header::CONTENT_RANGE,
                &format!("bytes */{size}"),
            );
            return Ok(response);
        }
        Err(error) => return Err(Problem::from_jobs(error)),
    };
    let partial = range.is_some();
    let length = download.range.end - download.range.start;
    let stream = download.stream.map(|chunk| chunk.map_err(axum::Error::new));
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = if partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    set(&mut response, header::CONTENT_TYPE, &artifact.media_type);
    set(&mut response, header::CONTENT_LENGTH, &length.to_string());
    set(&mut response, header::ETAG, &etag);
    set(&mut response, header::ACCEPT_RANGES, "bytes");
    set(
        &mut response,
        header::CONTENT_DISPOSITION,
        &content_disposition(&artifact.name),
    );
    if partial {
        set(
            &mut response,
            header::CONTENT_RANGE,
            &format!(
                "bytes {}-{}/{}",
                download.range.start,
                download.range.end - 1,
                download.size
            ),
        );
    }
    Ok(response)
}

fn set(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

/// Whether an `If-None-Match` value names `etag` (or is `*`).
fn etag_matches(wanted: &HeaderValue, etag: &str) -> bool {
    wanted.to_str().is_ok_and(|wanted| {
        wanted
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
    })
}

/// Whether a range may be served: there is no `If-Range`, or it is the current `ETag` (a
/// date, or another tag, means the caller's copy is of other bytes: it gets them whole).
fn if_range_holds(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_RANGE)
        .is_none_or(|value| value.to_str().is_ok_and(|value| value.trim() == etag))
}

/// One byte range of a `Range` header, or `None` when it is not one this server serves as a
/// range (several ranges, another unit, a malformed one: the whole file is sent).
fn parse_range(value: &HeaderValue) -> Option<ByteRange> {
    let spec = value.to_str().ok()?.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let number = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => Some(ByteRange::Suffix(number(suffix)?)),
        (start, "") => Some(ByteRange::From(number(start)?)),
        (start, end) => {
            let (start, end) = (number(start)?, number(end)?);
            (start <= end).then_some(ByteRange::Bounded {
                start,
                end: end.checked_add(1)?,
            })
        }
    }
}

/// `attachment` with the file's last segment as its name: plain when it is printable ASCII
/// without quotes or backslashes, and as RFC 8187 `filename*` always.
fn content_disposition(name: &str) -> String {
    let file = name.rsplit('/').next().unwrap_or(name);
    let plain: String = file
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{plain}\"; filename*=UTF-8''{}",
        utf8_percent_encode(file, ENCODED)
    )
}

/// Every byte but RFC 3986's unreserved ones (letters, digits, `-._~`) is percent-encoded.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The same, keeping `/` (names are paths, and routes take them with their `/`).
const ENCODED_IN_PATH: &AsciiSet = &ENCODED.remove(b'/');

/// A name (or any text) as a URL path: percent-encoded, its `/` kept.
pub fn url_path(name: &str) -> String {
    utf8_percent_encode(name, ENCODED_IN_PATH).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> Option<ByteRange> {
        parse_range(&HeaderValue::from_str(text).unwrap())
    }

    #[test]
    fn one_byte_range_is_read_and_anything_else_is_the_whole_file() {
        assert_eq!(
            range("bytes=0-99"),
            Some(ByteRange::Bounded { start: 0, end: 100 })
        );
        assert_eq!(range("bytes=100-"), Some(ByteRange::From(100)));
        assert_eq!(range("bytes=-5"), Some(ByteRange::Suffix(5)));
        assert_eq!(
            range("bytes= 7-7 "),
            Some(ByteRange::Bounded { start: 7, end: 8 })
        );
        for whole in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-1",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=0-18446744073709551615",
            "0-1",
        ] {
            assert_eq!(range(whole), None, "{whole}");
        }
    }

    #[test]
    fn names_are_encoded_for_urls_and_attachments() {
        assert_eq!(
            url_path("Packages/g/gcc-c++-1.0.rpm"),
            "Packages/g/gcc-c%2B%2B-1.0.rpm"
        );
        assert_eq!(url_path("read me ü?#"), "read%20me%20%C3%BC%3F%23");
        assert_eq!(
            content_disposition("repodata/repomd.xml"),
            "attachment; filename=\"repomd.xml\"; filename*=UTF-8''repomd.xml"
        );
        assert_eq!(
            content_disposition("a \"b\" ü.rpm"),
            "attachment; filename=\"a _b_ _.rpm\"; filename*=UTF-8''a%20%22b%22%20%C3%BC.rpm"
        );
    }

    #[test]
    fn etags_match_as_if_none_match_says() {
        let etag = "\"abc\"";
        for (header, matches) in [
            ("\"abc\"", true),
            ("W/\"abc\"", true),
            ("\"x\", \"abc\"", true),
            ("*", true),
            ("\"abd\"", false),
            ("abc", false),
        ] {
            assert_eq!(
                etag_matches(&HeaderValue::from_str(header).unwrap(), etag),
                matches,
                "{header}"
            );
        }
    }
}
