//! User-mode networking (`network = "user"`, the default) attacked through real jobs: a step
//! that asks reaches an HTTP server on this machine's own (non-loopback) address and not one on
//! its loopback, and resolves names as the host does; a step that did not ask reaches nothing;
//! slirp4netns ends with its step, also on cancel; a missing slirp4netns fails the step before
//! its command runs; `network = "none"` and `"host"`; what a networked step costs.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::*;

/// An HTTP server on `address` answering every request with `body`, counting the connections
/// it accepted; it serves until the listener (returned) is dropped with the test.
fn serve(address: IpAddr, body: &'static str) -> (u16, Arc<AtomicUsize>, TcpListener) {
    let listener = TcpListener::bind((address, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let server = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        for stream in server.incoming() {
            let Ok(mut stream) = stream else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut request = [0; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, accepted, listener)
}

/// A job of these steps (`sh` steps: `/in` and `/out` mounted), those named in `networked`
/// (comma-separated, or none) asking for network.
fn networked_job(steps: &[(&str, String)], networked: &str) -> Plan {
    let containers: Vec<Value> = steps
        .iter()
        .map(|(name, script)| sh(name, script))
        .collect();
    let mut rendered = job(&json!([]), &Value::from(containers), None);
    if !networked.is_empty() {
        rendered.manifests[1].body["spec"]["template"]["metadata"] =
            json!({"annotations": {omni_engine_local::NETWORK_ANNOTATION: networked}});
    }
    Plan::from_rendered(&rendered).unwrap()
}

fn with_network(network: Network) -> SandboxConfig {
    SandboxConfig {
        network,
        ..SandboxConfig::default()
    }
}

fn runner_with(root: &Path, config: SandboxConfig) -> LocalRunner {
    LocalRunner::with_isolation(
        root,
        Isolation::Sandboxed(std::sync::Arc::new(Sandbox::new(config))),
    )
}

/// The live slirp4netns processes started for the job whose directory is `dir` (they carry it
/// as `OMNI_JOB_DIR` in their environment).
fn slirps_of(dir: &Path) -> Vec<u32> {
    let label = format!("OMNI_JOB_DIR={}", dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "slirp4netns")
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
                && std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == label.as_bytes()))
        })
        .collect()
}

/// `curl` of `url` printing the body, or `unreachable`, then a line break.
fn get(url: &str) -> String {
    format!("curl -sS --max-time 5 {url} 2>/dev/null || echo unreachable; echo")
}

/// The step that asks reaches a server on the host's own address, and neither one on the
/// host's loopback (as slirp's 10.0.2.2, its 10.0.2.3 resolver, or as 127.0.0.1, which is the
/// step's own) nor anything else there; the step after it, which did not ask, reaches nothing.
#[tokio::test]
async fn a_networked_step_reaches_the_host_but_not_its_loopback_and_others_have_no_network() {
    let host = host_address();
    let (public, public_accepted, _p) = serve(host, "from-the-host");
    let (private, private_accepted, _l) = serve("127.0.0.1".parse().unwrap(), "from-loopback");
    let asks = [
        "cat /etc/resolv.conf".to_owned(),
        get(&format!("http://{host}:{public}/")),
        get(&format!("http://10.0.2.2:{private}/")),
        get(&format!("http://127.0.0.1:{private}/")),
        get(&format!("http://10.0.2.3:{private}/")),
    ]
    .join("; ");
    let plan = networked_job(
        &[
            ("asks", asks),
            ("quiet", get(&format!("http://{host}:{public}/"))),
        ],
        "asks",
    );
    let root = tempfile::tempdir().unwrap();
    let mut run = LocalRunner::new(root.path()).start("net-1", plan).unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    let said = |step| {
        let mut said = lines(&events, step);
        said.retain(|l| !l.is_empty());
        said
    };
    assert_eq!(
        said("asks"),
        [
            "nameserver 10.0.2.3",
            "from-the-host",
            "unreachable",
            "unreachable",
            "unreachable"
        ],
        "{events:#?}"
    );
    assert_eq!(said("quiet"), ["unreachable"], "{events:#?}");
    // Each curl had its answer before the step ended, so a connection slirp4netns had made
    // would have been counted: the host's server saw the one that asked, loopback's none.
    assert_eq!(public_accepted.load(Ordering::SeqCst), 1);
    assert_eq!(private_accepted.load(Ordering::SeqCst), 0);
}

/// slirp4netns runs while its step does, and is gone once the step has ended by itself, and
/// once a cancelled step has.
#[tokio::test]
async fn slirp4netns_ends_with_its_step_and_on_cancel() {
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let plan = networked_job(&[("waits", "cat /in/greeting".to_owned())], "waits");
    let mut run = runner.start("slirp-1", plan).unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert_eq!(slirps_of(&runner.job_dir("slirp-1")), Vec::<u32>::new());

    let plan = networked_job(
        &[("waits", "echo started; sleep 600.201".to_owned())],
        "waits",
    );
    let mut run = runner.start("slirp-2", plan).unwrap();
    started(&mut run).await;
    assert_eq!(
        slirps_of(&runner.job_dir("slirp-2")).len(),
        1,
        "one slirp4netns while the step runs"
    );
    run.cancel();
    let (_, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Cancelled);
    // The step reports its end once its slirp4netns has exited: no waiting here.
    assert_eq!(slirps_of(&runner.job_dir("slirp-2")), Vec::<u32>::new());
    assert!(!sleeping("600.201"));
}

/// Without slirp4netns, a step that asks for network fails before its command runs, saying
/// so; `network = "none"` fails it saying why; `network = "host"` gives it the host's.
#[tokio::test]
async fn a_networked_step_without_slirp4netns_or_with_none_fails_before_it_runs() {
    let root = tempfile::tempdir().unwrap();
    let runs = "touch /out/ran; echo ran";
    let missing = runner_with(
        root.path(),
        SandboxConfig {
            slirp4netns: "/nonexistent/slirp4netns".into(),
            ..SandboxConfig::default()
        },
    );
    let mut run = missing
        .start("miss-1", networked_job(&[("net", runs.to_owned())], "net"))
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert!(
        matches!(&outcome, Outcome::Failed(m) if m.contains("/nonexistent/slirp4netns is not installed") && m.contains("step net")),
        "{outcome:?}"
    );
    assert!(lines(&events, "net").is_empty(), "{events:#?}");
    assert!(!missing.volume_dir("miss-1", "out").join("ran").exists());

    let none = runner_with(root.path(), with_network(Network::None));
    let mut run = none
        .start("none-1", networked_job(&[("net", runs.to_owned())], "net"))
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert!(
        matches!(&outcome, Outcome::Failed(m) if m.contains("asks for network") && m.contains("network = \"none\"")),
        "{outcome:?}"
    );
    assert!(lines(&events, "net").is_empty(), "{events:#?}");
    assert!(!none.volume_dir("none-1", "out").join("ran").exists());

    let (private, private_accepted, _l) = serve("127.0.0.1".parse().unwrap(), "from-loopback");
    let host = runner_with(root.path(), with_network(Network::Host));
    let mut run = host
        .start(
            "host-1",
            networked_job(
                &[("net", get(&format!("http://127.0.0.1:{private}/")))],
                "net",
            ),
        )
        .unwrap();
    let (events, outcome) = finish(&mut run).await;
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    assert_eq!(lines(&events, "net"), ["from-loopback"]);
    assert_eq!(private_accepted.load(Ordering::SeqCst), 1);
}

/// What a step's network costs: jobs of one networked step against jobs of one plain step,
/// timed from start to end (the figure is printed; the bound only catches a stall).
#[tokio::test]
async fn what_a_networked_step_costs() {
    let root = tempfile::tempdir().unwrap();
    let runner = LocalRunner::new(root.path());
    let timed = |id: String, networked: &'static str| {
        let plan = networked_job(&[("s", "true".to_owned())], networked);
        let mut run = runner.start(&id, plan).unwrap();
        async move {
            let at = Instant::now();
            let (events, outcome) = finish(&mut run).await;
            assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
            at.elapsed()
        }
    };
    let (mut plain, mut networked) = (Vec::new(), Vec::new());
    for i in 0..8 {
        plain.push(timed(format!("plain-{i}"), "").await);
        networked.push(timed(format!("net-{i}"), "s").await);
    }
    plain.sort();
    networked.sort();
    let (plain, networked) = (plain[plain.len() / 2], networked[networked.len() / 2]);
    eprintln!(
        "median of 8 jobs of one step `true`: plain {plain:?}, networked {networked:?} (+{:?})",
        networked.saturating_sub(plain)
    );
    assert!(networked < plain + std::time::Duration::from_secs(2));
}

/// Names resolve inside through slirp4netns's 10.0.2.3 to what the host resolves them to
/// (the name of the archive this machine installs packages from; a machine that cannot
/// resolve it itself cannot check this, and the test says so).
#[tokio::test]
async fn names_resolve_inside_as_the_host_resolves_them() {
    let name = "deb.debian.org";
    let host = Command::new("getent")
        .args(["hosts", name])
        .output()
        .unwrap();
    if !host.status.success() {
        eprintln!("this machine cannot resolve {name} itself: whether a step can is not checked");
        return;
    }
    let resolver = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let first = resolver
        .lines()
        .find_map(|l| l.strip_prefix("nameserver "))
        .map(str::trim);
    let plan = networked_job(&[("dns", format!("getent hosts {name}"))], "dns");
    let root = tempfile::tempdir().unwrap();
    let mut run = LocalRunner::new(root.path()).start("dns-1", plan).unwrap();
    let (events, outcome) = finish(&mut run).await;
    if first.is_some_and(|a| a.starts_with("127.") && a != "127.0.0.53") {
        // The step gets no DNS then, and its log says why.
        assert!(
            lines(&events, "dns").iter().any(|l| l.contains("no DNS")),
            "{events:#?}"
        );
        return;
    }
    assert_eq!(outcome, Outcome::Succeeded, "{events:#?}");
    let inside = lines(&events, "dns");
    let host = String::from_utf8_lossy(&host.stdout);
    let address = inside[0].split_whitespace().next().unwrap();
    assert!(
        host.split_whitespace().any(|a| a == address),
        "inside: {inside:?}, host: {host}"
    );
}
