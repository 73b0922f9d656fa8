//! This process's memory and CPU, and the rows of the latency table.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use omni_engine::JobId;

use crate::common::percentile;

/// This process's resident set now and at its peak (kB), and its CPU time so far.
pub(crate) struct Usage {
    pub(crate) rss_kb: u64,
    pub(crate) hwm_kb: u64,
    pub(crate) cpu: Duration,
}

pub(crate) fn usage() -> Usage {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // After the command's closing parenthesis: fields 3.., utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // Clock ticks of 1/100 s (USER_HZ on Linux).
    let ticks = fields[11] + fields[12];
    Usage {
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
        cpu: Duration::from_millis(ticks * 10),
    }
}

/// One latency line: from `from` to `to`, over the jobs that have both.
pub(crate) fn row(
    name: &str,
    from: &HashMap<JobId, Instant>,
    to: &HashMap<JobId, Instant>,
) -> Option<Duration> {
    let mut samples: Vec<Duration> = from
        .iter()
        .filter_map(|(id, start)| Some(to.get(id)?.saturating_duration_since(*start)))
        .collect();
    if samples.is_empty() {
        println!("| {name} | - | - | 0 |");
        return None;
    }
    samples.sort();
    let p99 = percentile(&samples, 0.99);
    println!(
        "| {name} | {} | {} | {} |",
        ms(percentile(&samples, 0.5)),
        ms(p99),
        samples.len()
    );
    Some(p99)
}

pub(crate) fn ms(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

pub(crate) fn mib(kb: u64) -> String {
    format!("{:.0} MiB", kb as f64 / 1024.0)
}
