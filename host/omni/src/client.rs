//! The client half of the `omni` binary: a server's API over HTTP, for the commands that talk
//! to one (`submit`, `jobs`, `logs`, `plugins`).
//!
//! Exit codes, for scripts: 0 done (with `--wait`, the job succeeded); 1 the job failed or was
//! cancelled, or the server failed (5xx); 2 the command or the request was wrong (clap's usage
//! errors, and the server's 400, 404, 409, 413 and 422 answers); 3 the server could not be
//! reached (or answered 503: its store is down).

use std::fmt;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

/// The job ended badly (or the server failed).
pub const EXIT_FAILED: u8 = 1;
/// The command line or the request was wrong.
pub const EXIT_USAGE: u8 = 2;
/// No server answered.
pub const EXIT_UNREACHABLE: u8 = 3;

/// How to reach the server and what to print; every client command takes these.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    #[command(flatten)]
    pub server: Server,
    /// Tables and lines for people, or JSON for scripts.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// How to reach the server (commands whose `-o` means something else, such as
/// `omni artifacts get`, take these without [`Remote::output`]).
#[derive(Debug, Clone, Args)]
pub struct Server {
    /// The server's URL.
    #[arg(long, env = "OMNI_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A bearer token.
    #[arg(long, env = "OMNI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A user (HTTP Basic, with --password).
    #[arg(long, env = "OMNI_USER")]
    pub user: Option<String>,
    /// The user's password.
    #[arg(long, env = "OMNI_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned tables and plain lines.
    Table,
    /// JSON, as the API answers it.
    Json,
}

/// Why a command did not do its work.
#[derive(Debug)]
pub enum Failure {
    /// No answer from the server.
    Unreachable(String),
    /// The server answered with an error (problem+json).
    Problem {
        /// The status.
        status: StatusCode,
        /// The problem document (or what the server sent).
        body: Value,
    },
    /// Anything else (bad local input, a broken answer).
    Other(anyhow::Error),
}

impl Failure {
    /// The exit code scripts see.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Unreachable(_) => EXIT_UNREACHABLE,
            Failure::Problem { status, .. } if *status == StatusCode::SERVICE_UNAVAILABLE => {
                EXIT_UNREACHABLE
            }
            Failure::Problem { status, .. } if status.is_client_error() => EXIT_USAGE,
            Failure::Problem { .. } | Failure::Other(_) => EXIT_FAILED,
        }
    }
}

impl fmt::Display for Failure {
    /// One clear line, and the field errors under it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable(why) => write!(f, "cannot reach the server: {why}"),
            Failure::Problem { status, body } => {
                let title = body["title"]
                    .as_str()
                    .unwrap_or_else(|| status.canonical_reason().unwrap_or("the server refused"));
                write!(f, "{title} ({})", status.as_u16())?;
                if let Some(detail) = body["detail"].as_str() {
                    write!(f, ": {detail}")?;
                }
                for error in body["errors"].as_array().into_iter().flatten() {
                    write!(
                        f,
                        "\n  {}: {}",
                        error["path"].as_str().unwrap_or("?"),
                        error["message"].as_str().unwrap_or("?")
                    )?;
                }
                if *status == StatusCode::UNAUTHORIZED {
                    write!(
                        f,
                        "\n  sign in with OMNI_TOKEN (--token), or OMNI_USER and OMNI_PASSWORD (--user, --password)"
                    )?;
                }
                Ok(())
            }
            Failure::Other(error) => write!(f, "{error:#}"),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Other(error)
    }
}

/// What a client command returns.
pub type Outcome = Result<ExitCode, Failure>;

/// Runs a client command on a runtime of its own and turns a failure into its message and
/// exit code.
pub fn run(command: impl std::future::Future<Output = Outcome>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("omni: cannot start: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("omni: {failure}");
            ExitCode::from(failure.code())
        }
    }
}

/// A server's API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    remote: Server,
}

impl Client {
    /// A client of the server `remote` names.
    pub fn new(remote: &Server) -> Result<Self, Failure> {
        let base = remote.url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base).map_err(|e| {
            Failure::Other(anyhow::anyhow!(
                "OMNI_URL / --url {base:?} is not a URL: {e}"
            ))
        })?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("omni/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| Failure::Other(e.into()))?;
        Ok(Client {
            base,
            http,
            remote: remote.clone(),
        })
    }

    /// A request to `path` (which starts with `/`), with the credentials.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match (&self.remote.token, &self.remote.user) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some(user)) => request.basic_auth(user, self.remote.password.as_ref()),
            (None, None) => request,
        }
    }

    /// Sends `request`; a 2xx answer's response, else its problem.
    pub async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response, Failure> {
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Unreachable(format!("{}: {}", self.base, error_chain(&e))))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| {
            serde_json::json!({"title": status.canonical_reason().unwrap_or("error"), "detail": text.trim()})
        });
        Err(Failure::Problem { status, body })
    }

    /// Sends `request` and reads the answer's JSON (null for an empty body).
    pub async fn json(&self, request: RequestBuilder) -> Result<Value, Failure> {
        let response = self.send(request).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failure::Unreachable(error_chain(&e)))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Failure::Other(anyhow::anyhow!("the server's answer is not JSON: {e}")))
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.json(self.request(Method::GET, path)).await
    }

    /// Sends `request` asking for server-sent events; the events as they come. The stream ends
    /// when the connection does (callers reconnect from the last id they saw).
    pub async fn events(
        &self,
        request: RequestBuilder,
    ) -> Result<impl Stream<Item = eventsource_stream::Event> + use<>, Failure> {
        let response = self
            .send(request.header("accept", "text/event-stream"))
            .await?;
        Ok(response
            .bytes_stream()
            .eventsource()
            .take_while(|event| std::future::ready(event.is_ok()))
            .filter_map(|event| std::future::ready(event.ok())))
    }
}

/// An error and its causes on one line (reqwest's own message leaves out why a connection
/// failed).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
