//! Observability end to end: `omni serve` with the default local engine runs jobs of the hostile
//! fixture (`print`, `panic`); `GET /metrics` then parses as the Prometheus text format and its
//! counters and histograms moved as the work did (a webhook receiver on loopback that refuses
//! once gets its deliveries counted by outcome); `--log-format json` writes one JSON object per
//! line, and a line about a job carries the job's id in its `job` span (as the text format does
//! in its `job{job_id=...}` prefix).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Server, ended, get, install, serve_with};
use serde_json::{Value, json};

fn server(env: &[(&str, &str)]) -> (Server, tempfile::TempDir, tempfile::TempDir) {
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    install(plugins.path(), "hostile");
    let server = serve_with(plugins.path(), data.path(), env);
    (server, plugins, data)
}

async fn submit(server: &Server, task: &str, params: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/jobs", server.url))
        .json(
            &json!({"service": "obs", "task": task, "arch": std::env::consts::ARCH,
                      "params": params}),
        )
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// One sample of the exposition: its name and labels.
type Series = (String, BTreeMap<String, String>);

/// Parses the Prometheus text exposition format (0.0.4) strictly enough to catch what a
/// scraper would refuse: every line a `# HELP`/`# TYPE` comment or `name{label="value",...}
/// value`, names and label names of the allowed characters, values that parse as floats, each
/// family's TYPE before its samples and at most once.
fn parse(text: &str) -> (BTreeMap<Series, f64>, BTreeMap<String, String>) {
    fn is_name(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    let mut samples = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (kind, name, rest) = (parts.next(), parts.next(), parts.next());
            let name = name.unwrap_or_else(|| panic!("comment without a name: {line}"));
            assert!(is_name(name, true), "bad metric name in {line}");
            match kind {
                Some("HELP") => assert!(rest.is_some_and(|h| !h.is_empty()), "{line}"),
                Some("TYPE") => {
                    let kind = rest.unwrap_or_default();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{line}"
                    );
                    let before = types.insert(name.to_owned(), kind.to_owned());
                    assert!(before.is_none(), "TYPE twice for {name}");
                }
                _ => panic!("unknown comment: {line}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                rest.strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}")),
            ),
            None => (series, ""),
        };
        assert!(is_name(name, true), "bad metric name in {line}");
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        assert!(
            types.contains_key(family) || types.contains_key(name),
            "sample before its TYPE: {line}"
        );
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (label, after) = rest
                .split_once("=\"")
                .unwrap_or_else(|| panic!("bad label in {line}"));
            assert!(is_name(label, false), "bad label name in {line}");
            // Values escape `\`, `"` and newlines with a backslash.
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        _ => panic!("bad escape in {line}"),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value in {line}"),
                }
            };
            map.insert(label.to_owned(), value);
            rest = after[end + 1..]
                .strip_prefix(',')
                .unwrap_or(&after[end + 1..]);
        }
        let before = samples.insert((name.to_owned(), map), value);
        assert!(before.is_none(), "a series twice: {line}");
    }
    (samples, types)
}

/// The value of the series `name` with exactly `labels`.
fn value(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key = (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    *samples.get(&key).unwrap_or_else(|| {
        let known: Vec<_> = samples.keys().filter(|(n, _)| n == name).collect();
        panic!("no series {key:?}; of {name}: {known:?}")
    })
}

/// The sum of every series `name` whose labels include `labels`.
fn sum(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|((n, l), _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_the_server_did() {
    let (server, _plugins, _data) = server(&[]);
    let (status, job) = submit(
        &server,
        "hostile",
        json!({"behaviour": "print", "lines": 5, "pause": 0}),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap();
    assert_eq!(ended(&server.url, id).await["state"], "succeeded");
    let (status, panics) = submit(&server, "hostile", json!({"behaviour": "panic"})).await;
    assert_eq!(status, 201, "{panics}");
    let failed = ended(&server.url, panics["id"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let (status, problem) = submit(&server, "no-such-task", json!({})).await;
    assert_eq!(status, 404, "{problem}");
    let (status, page) = get(&format!("{}/v1/jobs/{id}/logs?limit=1000", server.url)).await;
    assert_eq!(status, 200);
    let lines = page["items"].as_array().unwrap().len();
    assert_eq!(lines, 6, "{page}");

    let response = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
    );
    let text = response.text().await.unwrap();
    let (samples, types) = parse(&text);

    for (family, kind) in [
        ("omni_job_submissions_total", "counter"),
        ("omni_job_transitions_total", "counter"),
        ("omni_log_lines_stored_total", "counter"),
        ("omni_plugin_call_duration_seconds", "histogram"),
        ("omni_plugin_errors_total", "counter"),
        ("omni_plugin_loads_total", "counter"),
        ("omni_store_operation_duration_seconds", "histogram"),
        ("omni_http_requests_total", "counter"),
        ("omni_http_request_duration_seconds", "histogram"),
    ] {
        assert_eq!(
            types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no HELP"
        );
    }

    let submissions = "omni_job_submissions_total";
    let accepted = [("task", "hostile"), ("outcome", "accepted"), ("reason", "")];
    assert_eq!(value(&samples, submissions, &accepted), 2.0);
    let unknown = [
        ("task", ""),
        ("outcome", "rejected"),
        ("reason", "no_such_task"),
    ];
    assert_eq!(value(&samples, submissions, &unknown), 1.0);

    let transitions = "omni_job_transitions_total";
    for (to, count) in [("pending", 2.0), ("queued", 2.0), ("running", 1.0)] {
        assert_eq!(
            value(&samples, transitions, &[("task", "hostile"), ("to", to)]),
            count
        );
    }
    assert_eq!(
        value(
            &samples,
            transitions,
            &[("task", "hostile"), ("to", "succeeded")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            transitions,
            &[("task", "hostile"), ("to", "failed")]
        ),
        1.0
    );

    // Both submissions were validated, both jobs rendered: one answer, one panic.
    let calls = "omni_plugin_call_duration_seconds_count";
    for (export, count) in [("validate", 2.0), ("serialize", 2.0)] {
        let labels = [("task", "hostile"), ("export", export)];
        assert_eq!(value(&samples, calls, &labels), count, "{export}");
    }
    assert!(
        value(
            &samples,
            calls,
            &[("task", "hostile"), ("export", "describe")]
        ) >= 1.0
    );
    let panicked = [
        ("task", "hostile"),
        ("export", "serialize"),
        ("kind", "panic"),
    ];
    assert_eq!(value(&samples, "omni_plugin_errors_total", &panicked), 1.0);
    assert!(
        value(
            &samples,
            "omni_plugin_loads_total",
            &[("outcome", "loaded")]
        ) >= 1.0
    );

    assert_eq!(
        value(&samples, "omni_log_lines_stored_total", &[]),
        lines as f64
    );

    // A histogram of store calls, its buckets cumulative up to +Inf = its count.
    let store = "omni_store_operation_duration_seconds";
    let created = [("operation", "create_job")];
    assert_eq!(value(&samples, &format!("{store}_count"), &created), 2.0);
    assert_eq!(
        value(
            &samples,
            &format!("{store}_bucket"),
            &[("operation", "create_job"), ("le", "+Inf")]
        ),
        2.0
    );
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|((n, l), _)| {
            *n == format!("{store}_bucket") && l.get("operation").is_some_and(|o| o == "get_job")
        })
        .map(|((_, l), v)| (l["le"].parse::<f64>().unwrap(), *v))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 2, "{buckets:?}");
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    assert!(value(&samples, &format!("{store}_sum"), &created) > 0.0);

    // HTTP requests by route template, never by path.
    let requests = "omni_http_requests_total";
    let posted = [("method", "POST"), ("route", "/v1/jobs"), ("status", "201")];
    assert_eq!(value(&samples, requests, &posted), 2.0);
    let refused = [("method", "POST"), ("route", "/v1/jobs"), ("status", "404")];
    assert_eq!(value(&samples, requests, &refused), 1.0);
    let polled = [
        ("method", "GET"),
        ("route", "/v1/jobs/{id}"),
        ("status", "200"),
    ];
    assert!(value(&samples, requests, &polled) >= 2.0);
    assert!(
        !samples
            .keys()
            .any(|(_, l)| l.get("route").is_some_and(|r| r.contains(id))),
        "a route label with a job id"
    );
    let http_count = "omni_http_request_duration_seconds_count";
    assert_eq!(
        sum(
            &samples,
            http_count,
            &[("method", "POST"), ("route", "/v1/jobs")]
        ),
        3.0
    );

    // The scrape itself is counted by the next one.
    let again = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (samples, _) = parse(&again);
    let scraped = [("method", "GET"), ("route", "/metrics"), ("status", "200")];
    assert_eq!(value(&samples, requests, &scraped), 1.0);
}

/// Waits for a line of the server's log that `pick` accepts (the log is read by a thread).
async fn line(server: &Server, pick: impl Fn(&str) -> bool) -> String {
    for _ in 0..1000 {
        if let Some(line) = server.log.lock().unwrap().iter().find(|l| pick(l)) {
            return line.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no such line in the log:\n{}",
        server.log.lock().unwrap().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_jobs_id_in_its_span() {
    let (server, _plugins, _data) = server(&[("OMNI_LOG_FORMAT", "json")]);
    let (status, job) = submit(
        &server,
        "hostile",
        json!({"behaviour": "print", "lines": 1, "pause": 0}),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(ended(&server.url, &id).await["state"], "succeeded");
    let ended_line = line(&server, |l| l.contains("\"job ended\"")).await;
    let started_line = line(&server, |l| l.contains("\"job started\"")).await;
    for text in [&started_line, &ended_line] {
        let line: Value = serde_json::from_str(text).expect("a JSON line");
        assert_eq!(line["span"]["name"], "job", "{line}");
        assert_eq!(line["span"]["job_id"], id.as_str(), "{line}");
        assert_eq!(line["span"]["task"], "hostile", "{line}");
        assert_eq!(line["span"]["domain"], "default", "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
    }
    // Every line is one JSON object, the startup's included.
    for text in server.log.lock().unwrap().iter() {
        let line: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        assert!(line["fields"]["message"].is_string(), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_name_the_job_in_its_span() {
    let (server, _plugins, _data) = server(&[]);
    let (status, job) = submit(
        &server,
        "hostile",
        json!({"behaviour": "print", "lines": 1, "pause": 0}),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(ended(&server.url, &id).await["state"], "succeeded");
    let started = line(&server, |l| {
        l.contains("omni_scheduler::start: job started")
    })
    .await;
    assert!(
        !started.contains('\x1b'),
        "colours in a piped log: {started}"
    );
    assert!(
        started.contains(&format!(
            "job{{job_id={id} task=\"hostile\" domain=\"default\"}}"
        )),
        "{started}"
    );
}

/// The metrics of one scrape.
async fn scrape(server: &Server) -> BTreeMap<Series, f64> {
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    parse(&text).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_are_counted_by_outcome() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    // A receiver that refuses its first delivery and takes the rest.
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = Arc::clone(&counter);
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    // The receiver is on loopback, which deliveries may not reach unless allowed.
    let config = tempfile::tempdir().unwrap();
    let file = config.path().join("omni.toml");
    std::fs::write(&file, "[webhooks]\nallow_addresses = [\"127.0.0.1/32\"]\n").unwrap();
    let (server, _plugins, _data) = server(&[("OMNI_CONFIG", file.to_str().unwrap())]);
    let response = reqwest::Client::new()
        .post(format!("{}/v1/webhooks", server.url))
        .json(&json!({"url": hook, "events": ["job.succeeded"], "secret": "s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let (status, job) = submit(
        &server,
        "hostile",
        json!({"behaviour": "print", "lines": 1, "pause": 0}),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(
        ended(&server.url, job["id"].as_str().unwrap()).await["state"],
        "succeeded"
    );
    // One event: refused once, then delivered. The deliverer counts an attempt once it has the
    // answer, so wait for the count rather than for the receiver.
    let deliveries = "omni_webhook_deliveries_total";
    for _ in 0..3000 {
        let samples = scrape(&server).await;
        if sum(&samples, deliveries, &[("outcome", "delivered")]) >= 1.0 {
            assert_eq!(value(&samples, deliveries, &[("outcome", "rejected")]), 1.0);
            assert_eq!(
                value(&samples, deliveries, &[("outcome", "delivered")]),
                1.0
            );
            assert_eq!(received.load(Ordering::SeqCst), 2);
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no delivery was counted");
}

/// Labels come from fixed sets: a thousand requests with made-up methods and paths, sent
/// without credentials, add no series to the exposition once the first of their kind has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_methods_and_paths_add_no_series() {
    let (server, _plugins, _data) = server(&[]);
    let (client, url) = (&reqwest::Client::new(), server.url.as_str());
    let odd = |n: usize| async move {
        let method = reqwest::Method::from_bytes(format!("X{n}QZ").as_bytes()).unwrap();
        client
            .request(method, format!("{url}/v1/no/such/{n}/thing"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let series = || async {
        let text = reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let (samples, _) = parse(&text);
        samples
            .into_keys()
            .filter(|(name, _)| name.starts_with("omni_http_"))
            .collect::<std::collections::BTreeSet<_>>()
    };
    // One of each kind first (and a scrape, which is itself a request).
    assert!((400..500).contains(&odd(0).await));
    let _ = series().await;
    let before = series().await;
    for n in 1..=1000 {
        odd(n).await;
    }
    let after = series().await;
    assert_eq!(after, before, "new series: {:?}", after.difference(&before));
    assert!(
        before
            .iter()
            .any(|(_, labels)| labels.get("method").map(String::as_str) == Some("other")),
        "{before:?}"
    );
}
