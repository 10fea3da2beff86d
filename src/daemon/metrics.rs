//! Prometheus metrics, written to a node_exporter textfile-collector file.
//!
//! Contract: [`write()`] replaces the file atomically (a temporary file in the
//! same directory, then rename), so the collector never reads half a file.
//! The metric names and labels are documented in the README; counters never
//! go backwards while the daemon runs.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use log::warn;

use super::Shared;
use super::kernel;
use crate::packet::Malformed;

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                // Label values here are numbers and fixed words: no escaping
                // needed, but keep the format honest if that changes.
                let v = v.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = write!(self.text, "{k}=\"{v}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// The metrics, in the Prometheus text exposition format.
pub fn render(shared: &Shared) -> String {
    let mut o = Out {
        text: String::with_capacity(4096),
    };
    let active = shared.active();
    let kernel = kernel::nfqueues();

    o.family(
        "portgate_packets_total",
        "counter",
        "Packets judged, by queue and decision.",
    );
    for (queue, st) in &shared.stats {
        let q = queue.to_string();
        for (decision, reason, value) in [
            ("accept", "source_permit", st.accepted_source_permit.get()),
            (
                "accept",
                "destination_permit",
                st.accepted_destination_permit.get(),
            ),
            ("accept", "monitored", st.monitored.get()),
            ("accept", "unjudged", st.accepted_unjudged.get()),
            ("accept", "later_fragment", st.accepted_later_fragment.get()),
            ("drop", "unidentified", st.dropped_unidentified.get()),
            ("drop", "malformed", st.malformed_total()),
        ] {
            o.sample(
                "portgate_packets_total",
                &[("queue", &q), ("decision", decision), ("reason", reason)],
                value,
            );
        }
    }
    o.family(
        "portgate_unidentified_blocked_total",
        "counter",
        "Unidentified packets (dropped or monitored) that a block entry decided.",
    );
    for (queue, st) in &shared.stats {
        o.sample(
            "portgate_unidentified_blocked_total",
            &[("queue", &queue.to_string())],
            st.unidentified_blocked.get(),
        );
    }
    o.family(
        "portgate_malformed_total",
        "counter",
        "Packets dropped because they could not be parsed, by kind.",
    );
    for (queue, st) in &shared.stats {
        for m in Malformed::ALL {
            o.sample(
                "portgate_malformed_total",
                &[("queue", &queue.to_string()), ("kind", m.as_str())],
                st.malformed[m as usize].get(),
            );
        }
    }
    for (name, help, get) in [
        (
            "portgate_enobufs_total",
            "Receive errors ENOBUFS: the socket buffer overflowed and the kernel dropped (or, fail-open, accepted) packets portgate never saw.",
            (|s: &super::stats::QueueStats| s.enobufs.get())
                as fn(&super::stats::QueueStats) -> u64,
        ),
        (
            "portgate_reports_lost_total",
            "Reports of unidentified traffic lost because the reporter's channel was full (the packets were judged normally).",
            |s| s.channel_full.get(),
        ),
        (
            "portgate_verdict_errors_total",
            "Verdict sends the kernel refused, and kernel messages portgate could not read.",
            |s| s.verdict_errors.get() + s.protocol_errors.get(),
        ),
    ] {
        o.family(name, "counter", help);
        for (queue, st) in &shared.stats {
            o.sample(name, &[("queue", &queue.to_string())], get(st));
        }
    }
    o.family(
        "portgate_worker_heartbeat_age_seconds",
        "gauge",
        "Seconds since each queue's worker last went round its loop (it wakes at least every 0.25 s).",
    );
    for (queue, st) in &shared.stats {
        o.sample(
            "portgate_worker_heartbeat_age_seconds",
            &[("queue", &queue.to_string())],
            st.since_beat_ms() as f64 / 1000.0,
        );
    }

    o.family(
        "portgate_kernel_queue_length",
        "gauge",
        "Packets waiting in the kernel's queue for a verdict.",
    );
    for (queue, _) in &shared.stats {
        if let Some(k) = kernel.get(queue) {
            o.sample(
                "portgate_kernel_queue_length",
                &[("queue", &queue.to_string())],
                k.queued,
            );
        }
    }
    o.family(
        "portgate_kernel_queue_full_dropped_total",
        "counter",
        "Packets the kernel dropped (fail-open: accepted) because the queue was full.",
    );
    for (queue, _) in &shared.stats {
        if let Some(k) = kernel.get(queue) {
            o.sample(
                "portgate_kernel_queue_full_dropped_total",
                &[("queue", &queue.to_string())],
                k.dropped_queue_full,
            );
        }
    }
    o.family(
        "portgate_kernel_socket_full_dropped_total",
        "counter",
        "Packets the kernel dropped (fail-open: accepted) because portgate's socket buffer was full.",
    );
    for (queue, _) in &shared.stats {
        if let Some(k) = kernel.get(queue) {
            o.sample(
                "portgate_kernel_socket_full_dropped_total",
                &[("queue", &queue.to_string())],
                k.dropped_socket_full,
            );
        }
    }

    o.family(
        "portgate_port_packets_total",
        "counter",
        "Packets on judged ports, by port, protocol and outcome (identified, dropped, monitored), all queues.",
    );
    for ((proto, port), id) in shared.port_ids() {
        let port = port.to_string();
        let sum = |f: fn(&super::stats::PortCounters) -> u64| -> u64 {
            shared
                .stats
                .iter()
                .filter_map(|(_, s)| s.ports.get(usize::from(id)).map(f))
                .sum()
        };
        for (outcome, value) in [
            ("identified", sum(|p| p.identified.get())),
            ("dropped", sum(|p| p.dropped.get())),
            ("monitored", sum(|p| p.monitored.get())),
        ] {
            o.sample(
                "portgate_port_packets_total",
                &[
                    ("port", &port),
                    ("proto", proto.as_str()),
                    ("outcome", outcome),
                ],
                value,
            );
        }
    }

    let summary = active.ruleset.summary();
    let (v4, v6) = active.table.len();
    let last = shared.last_reload();
    for (name, kind, help, value) in [
        (
            "portgate_rules_generation",
            "gauge",
            "Generation of the rules in force (1 at start, +1 per successful reload).",
            active.generation as f64,
        ),
        (
            "portgate_rules_loaded_timestamp_seconds",
            "gauge",
            "Unix time the rules in force were loaded.",
            unix(active.loaded_at),
        ),
        (
            "portgate_rules_last_reload_success",
            "gauge",
            "1 if the last reload succeeded (or none was tried), 0 if it was refused.",
            if last.is_none_or(|r| r.ok) { 1.0 } else { 0.0 },
        ),
        (
            "portgate_rules_last_reload_timestamp_seconds",
            "gauge",
            "Unix time of the last reload attempt (the start time if none).",
            last.map_or(unix(shared.started), |r| unix(r.at)),
        ),
        (
            "portgate_rules_sites",
            "gauge",
            "Sites in the rules in force.",
            summary.sites as f64,
        ),
        (
            "portgate_rules_permits",
            "gauge",
            "Permit entries in the rules in force.",
            summary.permits as f64,
        ),
        (
            "portgate_rules_blocks",
            "gauge",
            "Block entries in the rules in force.",
            summary.blocks as f64,
        ),
        (
            "portgate_rules_judged_ports",
            "gauge",
            "Port/protocol pairs the rules judge.",
            summary.ports as f64,
        ),
        (
            "portgate_start_time_seconds",
            "gauge",
            "Unix time the daemon started.",
            unix(shared.started),
        ),
    ] {
        o.family(name, kind, help);
        o.sample(name, &[], value);
    }
    o.family(
        "portgate_table_prefixes",
        "gauge",
        "Prefixes in the compiled lookup table, by address family.",
    );
    o.sample("portgate_table_prefixes", &[("family", "ipv4")], v4);
    o.sample("portgate_table_prefixes", &[("family", "ipv6")], v6);

    let blocked = shared.blocked();
    o.family(
        "portgate_blocked_sources",
        "gauge",
        "Source/port pairs in the blocked-sources record.",
    );
    o.sample("portgate_blocked_sources", &[], blocked.len());
    o.family(
        "portgate_blocked_sources_capacity",
        "gauge",
        "Capacity of the blocked-sources record.",
    );
    o.sample("portgate_blocked_sources_capacity", &[], blocked.capacity());
    o.family(
        "portgate_blocked_sources_evicted_total",
        "counter",
        "Records evicted from the full blocked-sources record (least recently seen first).",
    );
    o.sample(
        "portgate_blocked_sources_evicted_total",
        &[],
        blocked.evicted(),
    );
    o.text
}

/// Writes the metrics to `path` atomically.
pub fn write(path: &Path, shared: &Shared) -> std::io::Result<()> {
    let text = render(shared);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "portgate.prom".into());
    // node_exporter ignores files not ending in .prom: a temporary name
    // that does not end so is never read half-written. Created new, never
    // opened through whatever is already there (a symlink planted in a
    // directory others can write must not redirect the write), and
    // readable by the collector (0644) whatever the service's umask.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| {
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Rewrites the metrics file every `metrics_interval` until `stop`.
pub fn write_loop(path: &Path, shared: &Shared, stop: &AtomicBool) {
    let mut warned = false;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            match write(path, shared) {
                Ok(()) => warned = false,
                Err(e) if !warned => {
                    warn!("cannot write metrics to {}: {e}", path.display());
                    warned = true;
                }
                Err(_) => {}
            }
            next = Instant::now() + shared.opts.metrics_interval;
        }
        std::thread::sleep(Duration::from_millis(100).min(shared.opts.metrics_interval));
    }
}
