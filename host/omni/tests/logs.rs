//! `GET /v1/jobs/{id}/logs` end to end: `omni serve` with the default local engine runs jobs of
//! the hostile fixture that print (`print`: `line 1` ... `line N`, a pause, `done`); their logs
//! are read in pages, followed live as server-sent events, resumed after a cursor or a
//! `Last-Event-ID`, capped, and a follower that does not read is dropped with where to resume.

mod common;

use common::{Server, ended, events, get, install, open, serve_with, texts};
use serde_json::{Value, json};

/// A server with the hostile fixture and `config` (TOML) as its configuration.
fn server(config: &str) -> (Server, tempfile::TempDir, tempfile::TempDir) {
    let plugins = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    install(plugins.path(), "hostile");
    let file = data.path().join("omni.toml");
    std::fs::write(&file, config).unwrap();
    let server = serve_with(
        plugins.path(),
        data.path(),
        &[("OMNI_CONFIG", file.to_str().unwrap())],
    );
    (server, plugins, data)
}

async fn print_job(server: &Server, lines: u64, pause: u32) -> String {
    submit(
        server,
        json!({"behaviour": "print", "lines": lines, "pause": pause}),
    )
    .await
}

/// Submits a hostile job with `params`; its id.
async fn submit(server: &Server, params: Value) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/jobs", server.url))
        .json(
            &json!({"service": "obs", "task": "hostile", "arch": std::env::consts::ARCH,
                      "params": params}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let job: Value = response.json().await.unwrap();
    job["id"].as_str().unwrap().to_owned()
}

fn printed(lines: u64) -> Vec<String> {
    let mut all: Vec<String> = (1..=lines).map(|i| format!("line {i}")).collect();
    all.push("done".into());
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_is_followed_live_paged_and_resumed() {
    let (server, _plugins, _data) = server("");
    let id = print_job(&server, 3000, 2).await;
    // Two followers from the start, while the job runs.
    let (first, second) = tokio::join!(
        async { events(open(&server, &id, "", &[]).await).await },
        async { events(open(&server, &id, "?follow=true", &[("accept", "*/*")]).await).await },
    );
    for followed in [&first, &second] {
        assert_eq!(texts(followed), printed(3000));
        let last = followed.last().unwrap();
        assert_eq!(last.event, "end", "{last:?}");
        assert_eq!(last.data["state"], "succeeded");
        // Each line's event id is its seq: 1, 2, 3, ... in order.
        let ids: Vec<u64> = followed
            .iter()
            .filter(|e| e.event == "line")
            .map(|e| e.id.parse().unwrap())
            .collect();
        assert_eq!(ids, (1..=3001).collect::<Vec<u64>>());
        let line = &followed[0].data;
        assert_eq!(line["step"], "run");
        assert_eq!(line["stream"], "stdout");
        assert_eq!(line["seq"], 1);
        assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
    }
    assert_eq!(ended(&server.url, &id).await["state"], "succeeded");

    // The same lines in pages, each from the cursor of the one before.
    let mut paged = Vec::new();
    let mut query = "?limit=700".to_owned();
    loop {
        let (status, page) = get(&format!("{}/v1/jobs/{id}/logs{query}", server.url)).await;
        assert_eq!(status, 200, "{page}");
        for line in page["items"].as_array().unwrap() {
            paged.push(line["line"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => query = format!("?limit=700&after={next}"),
            None => break,
        }
    }
    assert_eq!(paged, printed(3000));
    let (_, page) = get(&format!(
        "{}/v1/jobs/{id}/logs?step=run&limit=2",
        server.url
    ))
    .await;
    assert_eq!(page["items"][1]["line"], "line 2");
    assert_eq!(page["next"], "2");

    // Following an ended job replays after the cursor and ends; Last-Event-ID wins over after.
    let resumed = events(open(&server, &id, "?after=2990", &[]).await).await;
    assert_eq!(texts(&resumed), printed(3000)[2990..].to_vec());
    assert_eq!(resumed.last().unwrap().event, "end");
    let resumed = events(open(&server, &id, "?after=5", &[("last-event-id", "3000")]).await).await;
    assert_eq!(texts(&resumed), ["done"]);
    assert_eq!(resumed.last().unwrap().event, "end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_log_requests_are_refused_with_the_field() {
    let (server, _plugins, _data) = server("");
    let id = print_job(&server, 1, 0).await;
    ended(&server.url, &id).await;
    let logs = format!("{}/v1/jobs/{id}/logs", server.url);
    for (query, path) in [
        ("?after=abc", Some("/query/after")),
        ("?after=-1", Some("/query/after")),
        ("?limit=0", Some("/query/limit")),
        ("?limit=10001", Some("/query/limit")),
        ("?limit=ten", Some("/query/limit")),
        ("?step=nope", Some("/query/step")),
        ("?follow=maybe", Some("/query/follow")),
        ("?step=nope&follow=true", Some("/query/step")),
        ("?colour=red", None),
    ] {
        let (status, problem) = get(&format!("{logs}{query}")).await;
        assert_eq!(status, 400, "{query}: {problem}");
        if let Some(path) = path {
            assert_eq!(problem["errors"][0]["path"], path, "{query}: {problem}");
        }
    }
    let response = reqwest::Client::new()
        .get(&logs)
        .header("accept", "text/event-stream")
        .header("last-event-id", "not-a-cursor")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["path"], "/headers/last-event-id");
    // No such job, and an id that is not a job id.
    let unknown = "8e0c52f6-0000-11f0-8000-000000000000";
    assert_eq!(
        get(&format!("{}/v1/jobs/{unknown}/logs", server.url))
            .await
            .0,
        404
    );
    assert_eq!(
        get(&format!("{}/v1/jobs/nope/logs", server.url)).await.0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_does_not_read_is_dropped_with_where_to_resume() {
    // Two batches of buffer: a follower that reads nothing while 200,000 lines are stored
    // (well past what the sockets hold) falls behind them.
    let (server, _plugins, _data) = server("[logs]\nfollower_batches = 2\n");
    let id = print_job(&server, 200_000, 0).await;
    let stalled = open(&server, &id, "", &[]).await;
    assert_eq!(ended(&server.url, &id).await["state"], "succeeded");
    let got = events(stalled).await;
    let last = got.last().unwrap();
    assert_eq!(last.event, "lagged", "{last:?}");
    let after = last.data["after"].as_str().map(str::to_owned);
    // It resumes where it was told: everything exactly once.
    let query = after
        .as_ref()
        .map_or(String::new(), |a| format!("?after={a}"));
    let rest = events(open(&server, &id, &query, &[]).await).await;
    assert_eq!(rest.last().unwrap().event, "end");
    let mut all = texts(&got);
    all.extend(texts(&rest));
    assert_eq!(all.len(), 200_001);
    assert!(all == printed(200_000), "lines lost or repeated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_over_the_jobs_limit_ends_with_a_marker() {
    let (server, _plugins, _data) = server("[logs]\nmax_job_bytes = 1000\n");
    let id = print_job(&server, 500, 0).await;
    assert_eq!(ended(&server.url, &id).await["state"], "succeeded");
    let (_, page) = get(&format!("{}/v1/jobs/{id}/logs?limit=10000", server.url)).await;
    let items = page["items"].as_array().unwrap();
    let (marker, kept) = items.split_last().unwrap();
    assert!(
        marker["line"]
            .as_str()
            .unwrap()
            .contains("reached its limit of 1000 bytes"),
        "{marker}"
    );
    assert_eq!(marker["stream"], "stderr");
    // Each line counts its text and what the store keeps of it besides (64 bytes).
    let bytes: usize = kept
        .iter()
        .map(|l| l["line"].as_str().unwrap().len() + 64)
        .sum();
    assert!(bytes <= 1000, "{bytes} bytes kept");
    assert!(bytes > 1000 - 64 - 10, "only {bytes} bytes kept");
    assert_eq!(kept[0]["line"], "line 1");
}

/// The server's anonymous resident memory (`RssAnon` in `/proc/<pid>/status`: its heap and
/// stacks, not the pages of its binary, which count in `VmRSS` as more of its code runs), in
/// bytes.
fn anonymous_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .unwrap_or_else(|| panic!("no RssAnon in /proc/{pid}/status"))
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    kib << 10
}

/// A step printing a million empty lines into a 1 KiB log cap: the stored log keeps to the cap
/// (each line counted with its 64 bytes of overhead: 16 empty lines) and ends with the marker, and the server's memory grows by
/// less than 64 MiB meanwhile (the most of its samples while the job runs) and comes back after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_empty_lines_keep_to_the_caps_and_the_memory_comes_back() {
    let (server, _plugins, _data) = server("[logs]\nmax_job_bytes = 1024\n");
    // A first job loads and instantiates the plugin, starts the engine's tasks.
    let warm = print_job(&server, 10, 0).await;
    assert_eq!(ended(&server.url, &warm).await["state"], "succeeded");
    let pid = server.child.id();
    let before = anonymous_memory(pid);

    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = {
        let peak = std::sync::Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(anonymous_memory(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    let blank = json!({"behaviour": "print", "lines": 1_000_000, "blank": true});
    let id = submit(&server, blank).await;
    assert_eq!(ended(&server.url, &id).await["state"], "succeeded");
    sampler.abort();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let after = anonymous_memory(pid);
    // What the burst took goes back to the system (jemalloc's background purge).
    let back = omni_test_support::eventually("the memory to come back", || async {
        let now = anonymous_memory(pid);
        (now < before + (16 << 20)).then_some(now)
    })
    .await;
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    eprintln!(
        "anonymous RSS before {:.1} MiB, peak {:.1} MiB, at the end {:.1} MiB, then {:.1} MiB",
        mib(before),
        mib(peak),
        mib(after),
        mib(back)
    );
    assert!(
        peak < before + (64 << 20),
        "the memory grew by {:.1} MiB",
        mib(peak - before)
    );

    let (_, page) = get(&format!("{}/v1/jobs/{id}/logs?limit=10000", server.url)).await;
    let items = page["items"].as_array().unwrap();
    assert!(page["next"].is_null(), "one page holds it all");
    let (marker, kept) = items.split_last().unwrap();
    let marker = marker["line"].as_str().unwrap();
    assert!(marker.contains("limit of 1024 bytes"), "{marker}");
    let bytes: usize = kept
        .iter()
        .map(|l| l["line"].as_str().unwrap().len() + 64)
        .sum();
    assert!(bytes <= 1024, "{bytes} bytes kept");
    assert_eq!(kept.len(), 16, "empty lines, 64 bytes each");
}

/// A hundred jobs with logs of 5,000 lines each, two at a time: when they have ended, the
/// server's anonymous memory is back within 32 MiB of what it was before them (the store's page
/// cache is set to 8 MiB here; what a job's log took in the engine and in the followers is
/// gone when it ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_comes_back_after_a_hundred_jobs_with_large_logs() {
    let (server, _plugins, _data) = server("[store.embedded]\ncache_bytes = 8388608\n");
    let warm = print_job(&server, 10, 0).await;
    assert_eq!(ended(&server.url, &warm).await["state"], "succeeded");
    let pid = server.child.id();
    let before = anonymous_memory(pid);
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(print_job(&server, 5000, 0).await);
    }
    for id in &ids {
        assert_eq!(ended(&server.url, id).await["state"], "succeeded");
    }
    let back = omni_test_support::eventually("the memory to come back", || async {
        let now = anonymous_memory(pid);
        (now < before + (32 << 20)).then_some(now)
    })
    .await;
    eprintln!(
        "anonymous RSS before {:.1} MiB, after 100 jobs {:.1} MiB",
        before as f64 / f64::from(1 << 20),
        back as f64 / f64::from(1 << 20)
    );
}
