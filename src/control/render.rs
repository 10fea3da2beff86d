//! The answers as a person reads them (`--json` prints them as sent).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::proto::{BlockedReply, ReloadReply, StatusReply};

/// RFC 3339, UTC, whole seconds.
pub fn time(unix: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(unix))
        .to_string()
}

fn ago(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

/// Left-aligned columns, two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 < r.len() {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn reload(r: &ReloadReply) -> String {
    if r.ok {
        let mut s = String::new();
        for d in &r.diagnostics {
            let _ = writeln!(s, "{}", d.render(&r.file));
        }
        if let Some(line) = r.omitted.line() {
            let _ = writeln!(s, "{line}");
        }
        let _ = writeln!(
            s,
            "reloaded {}: generation {}, {}",
            r.file, r.generation, r.summary
        );
        s
    } else {
        format!(
            "{}\ngeneration {} stays in force\n",
            r.load_error().refused_reload(),
            r.generation
        )
    }
}

pub fn status(s: &StatusReply) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "portgate {}, pid {}, up {} (since {}), fail-{}",
        s.version,
        s.pid,
        ago(s.uptime_secs),
        time(s.started_at),
        if s.fail_open { "open" } else { "closed" }
    );
    let _ = writeln!(
        out,
        "capabilities: {}",
        if s.capabilities.is_empty() {
            "none".to_owned()
        } else {
            s.capabilities.join(", ")
        }
    );
    let r = &s.rules;
    let _ = writeln!(
        out,
        "rules: {}, generation {}, loaded {}",
        r.file,
        r.generation,
        time(r.loaded_at)
    );
    let ports: Vec<String> = r
        .ports
        .iter()
        .map(|p| format!("{}/{} {}", p.port, p.proto.as_str(), p.mode.as_str()))
        .collect();
    let _ = writeln!(
        out,
        "  {}; judged: {}",
        r.summary,
        if ports.is_empty() {
            "nothing".to_owned()
        } else {
            ports.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "  table: {} IPv4 and {} IPv6 prefixes",
        r.prefixes_ipv4, r.prefixes_ipv6
    );
    match &s.last_reload {
        None => {
            let _ = writeln!(out, "last reload: none since start");
        }
        Some(l) => {
            let _ = writeln!(
                out,
                "last reload: {} {}",
                time(l.at),
                if l.ok {
                    "ok".to_owned()
                } else {
                    format!(
                        "REFUSED ({}; the generation above stays)",
                        crate::rules::count(l.errors, "error")
                    )
                }
            );
        }
    }
    let _ = writeln!(
        out,
        "blocked-sources record: {} of {} ({} evicted)\n",
        s.blocked.entries, s.blocked.capacity, s.blocked.evicted
    );
    let mut rows = vec![
        [
            "QUEUE",
            "PACKETS",
            "ACCEPTED",
            "DROPPED",
            "MONITORED",
            "MALFORMED",
            "ENOBUFS",
            "CHAN-FULL",
            "KERNEL:QUEUED",
            "Q-FULL",
            "SOCK-FULL",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for q in &s.queues {
        let k = q.kernel.clone().unwrap_or_default();
        let kernel = |v: u64| {
            if q.kernel.is_some() {
                v.to_string()
            } else {
                "-".into()
            }
        };
        rows.push(vec![
            q.queue.to_string(),
            q.packets.to_string(),
            q.accepted.to_string(),
            q.dropped.to_string(),
            q.monitored.to_string(),
            q.malformed.to_string(),
            q.enobufs.to_string(),
            q.channel_full.to_string(),
            kernel(k.queued),
            kernel(k.dropped_queue_full),
            kernel(k.dropped_socket_full),
        ]);
    }
    out.push_str(&table(&rows));
    let stale: Vec<String> = s
        .queues
        .iter()
        .filter(|q| q.since_heartbeat_ms > 2000)
        .map(|q| format!("queue {} ({} ms)", q.queue, q.since_heartbeat_ms))
        .collect();
    if !stale.is_empty() {
        let _ = writeln!(out, "WARNING: stalled workers: {}", stale.join(", "));
    }
    out
}

pub fn blocked(b: &BlockedReply, since: Option<&str>) -> String {
    let mut rows = vec![
        [
            "SOURCE",
            "PORT",
            "COUNT",
            "FIRST SEEN",
            "LAST SEEN",
            "LAST DESTINATION",
            "STATE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for e in &b.entries {
        rows.push(vec![
            e.source.to_string(),
            format!("{}/{}", e.port, e.proto.as_str()),
            e.count.to_string(),
            time(e.first_seen),
            time(e.last_seen),
            e.last_destination.to_string(),
            e.state.clone(),
        ]);
    }
    let mut out = if b.entries.is_empty() {
        String::new()
    } else {
        table(&rows)
    };
    let _ = writeln!(
        out,
        "{} shown of {} unidentified source/port pairs{}; the record holds {} of {} (when full, the least recently seen go first; {} so far)",
        b.entries.len(),
        b.matching,
        since
            .map(|s| format!(" seen in the last {s}"))
            .unwrap_or_default(),
        b.table.entries,
        b.table.capacity,
        b.table.evicted
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = table(&[
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["long".into(), "x".into(), "y".into()],
        ]);
        assert_eq!(t, "A     BB  C\nlong  x   y\n");
    }

    #[test]
    fn reload_replies_say_what_was_left_out() {
        use crate::rules::{Diagnostic, Omitted, Pos, Severity, Summary};
        let d = |severity| Diagnostic {
            severity,
            pos: Pos { line: 3, column: 5 },
            message: "m".into(),
            hint: None,
        };
        let mut r = ReloadReply {
            ok: false,
            file: "r.yaml".into(),
            generation: 4,
            summary: Summary {
                sites: 0,
                permits: 0,
                blocks: 0,
                ports: 1,
            },
            diagnostics: vec![d(Severity::Error)],
            omitted: Omitted {
                errors: 2,
                warnings: 0,
            },
        };
        assert_eq!(
            reload(&r),
            "r.yaml:3:5: error: m\n... and 2 more errors\nr.yaml: rejected: 3 errors; nothing was changed\ngeneration 4 stays in force\n"
        );
        r.ok = true;
        r.diagnostics = vec![d(Severity::Warning)];
        r.omitted = Omitted {
            errors: 0,
            warnings: 1,
        };
        assert!(
            reload(&r)
                .starts_with("r.yaml:3:5: warning: m\n... and 1 more warning\nreloaded r.yaml"),
            "{}",
            reload(&r)
        );
    }

    #[test]
    fn times() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(1_800_000_000), "2027-01-15T08:00:00Z");
    }
}
