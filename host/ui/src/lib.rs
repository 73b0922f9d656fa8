//! # omni-ui: the web UI's assets and routes
//!
//! Omni's web UI (issue 21) is a page of plain JavaScript over the public API (`/v1`): its
//! sources are in `web/src/`, bundled by esbuild (`web/build.mjs`, npm lockfile
//! `web/package-lock.json`) into `dist/`, which is committed and embedded here with
//! `include_bytes!`. So a `cargo build` of a fresh clone needs no Node; `make ui` rebuilds
//! `dist/`, and `make ui-check` builds it twice from the lockfile and compares both builds with
//! the committed one (`docs/ui.md` says why). This crate owns those bytes and the routes that
//! serve them — `GET /` (the page) and `GET /ui/{file}` (its script and stylesheet) — with
//! their content types, ETags and a Content-Security-Policy that lets the page load nothing
//! but its own files and talk to nothing but its own origin. It knows nothing of the API: the
//! `omni` binary merges these routes beside `omni_api::router`, whose fallback still answers
//! every other path (a problem+json 404 under `/v1`).
//!
//! # Layout
//! - [`ASSETS`]: the embedded files.
//! - [`routes`]: the axum routes over them.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// One embedded file of `dist/`.
#[derive(Debug)]
pub struct Asset {
    /// Its name under `/ui/` (`index.html` is served at `/`).
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

/// The built UI, as `make ui` left it in `dist/`.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../dist/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../dist/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../dist/app.css"),
    },
];

/// What the page may load and call: its own files and its own origin, nothing inline, no
/// frames (the API's answers are never rendered as HTML).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The UI's routes: `GET /` and `GET /ui/{file}`. Any state: they read none.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>, headers: HeaderMap| async move {
                serve(&file, &headers)
            }),
        )
}

/// Each asset's ETag (the SHA-256 of its bytes), in `ASSETS`' order.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| format!("\"{}\"", hex::encode(Sha256::digest(asset.bytes))))
            .collect()
    })
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|asset| asset.name == name) else {
        return (StatusCode::NOT_FOUND, "no such file of the web UI\n").into_response();
    };
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.bytes,
        )
            .into_response()
    };
    let set = response.headers_mut();
    // Revalidated on every load (a cheap 304): a new server's UI is never mixed with an old one.
    set.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        set.insert(header::ETAG, value);
    }
    set.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    set.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    set.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, etag: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        routes::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_page_and_its_files_are_served_with_their_types_and_policy() {
        for (path, kind) in [
            ("/", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/app.css", "text/css"),
        ] {
            let answer = get(path, None).await;
            assert_eq!(answer.status(), StatusCode::OK, "{path}");
            let headers = answer.headers();
            assert!(
                headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with(kind)
            );
            assert!(
                headers[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .unwrap()
                    .contains("connect-src 'self'")
            );
            let etag = headers[header::ETAG].to_str().unwrap().to_owned();
            let again = get(path, Some(&etag)).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        }
        assert_eq!(
            get("/ui/nothing.js", None).await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        let page = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        assert!(page.contains("src=\"/ui/app.js\""));
        assert!(page.contains("href=\"/ui/app.css\""));
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
