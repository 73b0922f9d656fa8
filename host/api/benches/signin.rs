//! How a flood of wrong passwords slows a right sign-in, printed as the README's table
//! (`make bench`).
//!
//! The real API with auth on, on loopback. Each measured sign-in is a user's first (its
//! password is checked by argon2, not remembered), from 127.0.0.1: first with nothing else going
//! on, then while 32 clients send wrong passwords for other names as fast as they are answered
//! from 127.0.0.2. Throttling answers the flood 429 before its passwords are checked, so the
//! password checks stay free for the right ones.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use omni_api::auth::{AuthConfig, Role, UserConfig};
use omni_api::{AppState, Authenticator, router};

const USERS: usize = 24;
const FLOODERS: usize = 32;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let password = "right password";
        let hash = omni_api::auth::hash_password(password).unwrap();
        let users = (0..2 * USERS)
            .map(|i| UserConfig {
                name: format!("user-{i}"),
                password_hash: hash.clone(),
                roles: [("*".to_owned(), Role::Viewer)].into(),
            })
            .collect();
        let config = AuthConfig {
            users,
            tokens: Vec::new(),
            throttle: Default::default(),
        };
        let (dirs, jobs) = omni_test_support::job_service(&[]);
        let state = AppState {
            auth: Arc::new(Authenticator::new(&config).unwrap()),
            ..AppState::new(jobs, Arc::clone(&dirs.registry))
        };
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = format!("http://127.0.0.1:{port}/v1/jobs");

        let quiet = sign_ins(&url, 0..USERS, password).await;
        let answered = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flood: Vec<_> = (0..FLOODERS)
            .map(|i| {
                let (url, stop, answered) = (url.clone(), stop.clone(), answered.clone());
                tokio::spawn(async move {
                    let from: IpAddr = "127.0.0.2".parse().unwrap();
                    let client = reqwest::Client::builder()
                        .local_address(from)
                        .build()
                        .unwrap();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let _ = client
                            .get(&url)
                            .basic_auth(format!("guess-{i}-{n}"), Some("wrong"))
                            .send()
                            .await;
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // The flood is under way before the right ones start.
        while answered.load(Ordering::Relaxed) < 100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        let before = answered.load(Ordering::Relaxed);
        let flooded = sign_ins(&url, USERS..2 * USERS, password).await;
        let rate = (answered.load(Ordering::Relaxed) - before) as f64 / started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for task in flood {
            let _ = task.await;
        }
        println!("| a user's first sign-in (argon2) | p50 | p99 |");
        println!("| --- | --- | --- |");
        print_row("alone", &quiet);
        print_row(
            &format!("during a flood of wrong passwords from another address ({FLOODERS} clients, {rate:.0} answered/s)"),
            &flooded,
        );
    });
}

/// The latency of each user's first sign-in, one after another.
async fn sign_ins(url: &str, users: std::ops::Range<usize>, password: &str) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let mut latencies = Vec::new();
    for i in users {
        let sent = Instant::now();
        let answer = client
            .get(url)
            .basic_auth(format!("user-{i}"), Some(password))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "user-{i}");
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    latencies
}

fn print_row(name: &str, latencies: &[Duration]) {
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "| {name} | {:.0} ms | {:.0} ms |",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
}
