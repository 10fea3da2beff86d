//! The control protocol: one JSON request per connection, one JSON answer.
//!
//! Both sides are in this crate, so the types are shared and a field added
//! on one side is seen on the other. The answers are also what `--json`
//! prints, so scripts read the same structure the daemon sends.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::rules::{Contact, Diagnostic, EntryKind, LoadError, Mode, Omitted, Proto, Summary};

/// No request names a file or anything else on the box: the daemon only
/// ever reads its configured rules file and writes its configured metrics
/// file. Unknown fields are refused, not ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Re-read the rules file and swap it in.
    Reload {},
    Status {},
    /// Unidentified sources seen in the last `since_secs` seconds (all when
    /// `None`); with `top`, the `top` busiest, otherwise most recent first.
    Blocked {
        since_secs: Option<u64>,
        top: Option<usize>,
    },
    Explain {
        address: IpAddr,
        port: u16,
        proto: Proto,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    Reload(ReloadReply),
    Status(Box<StatusReply>),
    Blocked(BlockedReply),
    Explain(Box<ExplainReply>),
    Error { error: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReply {
    pub ok: bool,
    pub file: String,
    /// The generation in force after the request: the new one on success,
    /// the unchanged one on failure.
    pub generation: u64,
    pub summary: Summary,
    /// Every problem (and warning), as `check` prints them: the first
    /// [`crate::rules::MAX_SHOWN`] of each kind.
    pub diagnostics: Vec<Diagnostic>,
    /// How many more there were.
    #[serde(default)]
    pub omitted: Omitted,
}

impl ReloadReply {
    /// The errors as `portgate check` prints them.
    pub fn load_error(&self) -> LoadError {
        LoadError {
            file: self.file.clone(),
            diagnostics: self.diagnostics.clone(),
            omitted: self.omitted,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    pub port: u16,
    pub proto: Proto,
    pub mode: Mode,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesInfo {
    pub file: String,
    pub generation: u64,
    /// Unix time the rules in force were loaded.
    pub loaded_at: u64,
    pub summary: Summary,
    pub ports: Vec<PortInfo>,
    pub prefixes_ipv4: usize,
    pub prefixes_ipv6: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastReload {
    /// Unix time of the last reload attempt.
    pub at: u64,
    pub ok: bool,
    pub errors: usize,
}

/// The kernel's own view of a queue, from /proc/net/netfilter/nfnetlink_queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelQueue {
    /// Packets waiting for a verdict now.
    pub queued: u64,
    /// Packets dropped (or, fail-open, accepted) because the queue was full.
    pub dropped_queue_full: u64,
    /// Packets dropped (or, fail-open, accepted) because our socket buffer
    /// was full.
    pub dropped_socket_full: u64,
    /// The last packet id the kernel assigned: packets queued since bind.
    pub id_sequence: u64,
    /// The netlink port id bound to the queue.
    pub portid: u64,
    pub copy_range: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub queue: u16,
    pub packets: u64,
    pub accepted: u64,
    pub dropped: u64,
    pub accepted_source_permit: u64,
    pub accepted_destination_permit: u64,
    pub accepted_unjudged: u64,
    pub accepted_later_fragment: u64,
    pub monitored: u64,
    pub dropped_unidentified: u64,
    pub unidentified_blocked: u64,
    pub malformed: u64,
    pub enobufs: u64,
    pub channel_full: u64,
    pub verdict_errors: u64,
    /// Milliseconds since the worker last went round its loop.
    pub since_heartbeat_ms: u64,
    /// `None` when the kernel does not list the queue (not bound).
    pub kernel: Option<KernelQueue>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedInfo {
    pub entries: usize,
    pub capacity: usize,
    pub evicted: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    pub version: String,
    pub pid: u32,
    pub started_at: u64,
    pub uptime_secs: u64,
    pub fail_open: bool,
    pub rules: RulesInfo,
    pub last_reload: Option<LastReload>,
    pub queues: Vec<QueueInfo>,
    pub blocked: BlockedInfo,
    /// The capabilities the daemon holds (effective set), by name.
    pub capabilities: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedEntry {
    pub source: IpAddr,
    pub port: u16,
    pub proto: Proto,
    pub count: u64,
    pub first_seen: u64,
    pub last_seen: u64,
    pub last_destination: IpAddr,
    /// "dropped", "blocked" (a carve-out decided), or "monitored" (let
    /// through: the port is in monitor mode).
    pub state: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedReply {
    pub entries: Vec<BlockedEntry>,
    /// Sources matching the request, before `top` cut the list.
    pub matching: usize,
    pub table: BlockedInfo,
}

/// How the rules judge one address on one port: what `explain --json`
/// prints. `verdict`, `text` and `generation` came first; scripts should
/// read the structured fields after them rather than parse `text`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainReply {
    /// "ACCEPT" or "DROP".
    pub verdict: String,
    /// The explanation as `portgate explain` prints it.
    pub text: String,
    /// The generation of the rules that answered; 0 when read from a file.
    pub generation: u64,
    pub address: IpAddr,
    pub port: u16,
    pub proto: Proto,
    /// Whether `ports:` lists the port for the protocol. When it does not,
    /// the packet is accepted unjudged: no mode, no entry.
    pub judged: bool,
    /// The port's mode; `None` when not judged.
    pub mode: Option<Mode>,
    pub answer: ExplainAnswer,
    /// The entry that decides the address on the port; `None` when no
    /// entry covers it, or the port is not judged.
    pub entry: Option<ExplainEntry>,
}

/// What the rules say of the address, whatever the port's mode makes of
/// it (an unidentified address on a monitor port is accepted all the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExplainAnswer {
    /// Its deciding entry is a permit.
    Identified,
    /// Its deciding entry is a block (a carve-out).
    Blocked,
    /// No entry covering it lists the port.
    Unidentified,
    /// The port is not judged.
    NotJudged,
}

/// The deciding entry, as the rules file has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainEntry {
    pub kind: EntryKind,
    /// The site's name.
    pub site: String,
    /// The entry's prefix, as `192.0.2.13/32` or `2001:db8:10::/48`.
    pub prefix: String,
    /// The entry's ports as the file lists them: `25`, or `53/udp`.
    pub ports: Vec<String>,
    /// The rules file, and where the entry starts in it.
    pub file: String,
    pub line: u32,
    pub column: u32,
    /// Permits: the type of device or application, and the domain name.
    pub device: Option<String>,
    pub domain: Option<String>,
    /// Blocks: why.
    pub reason: Option<String>,
    /// Whom to call about the address.
    pub contacts: ExplainContacts,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainContacts {
    pub site: Contact,
    pub technical: Contact,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for r in [
            Request::Reload {},
            Request::Status {},
            Request::Blocked {
                since_secs: Some(3600),
                top: None,
            },
            Request::Explain {
                address: "2001:db8::1".parse().unwrap(),
                port: 25,
                proto: Proto::Tcp,
            },
        ] {
            let line = serde_json::to_string(&r).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        }
        assert_eq!(
            serde_json::to_string(&Request::Reload {}).unwrap(),
            r#"{"cmd":"reload"}"#
        );
        for bad in [
            r#"{"cmd":"reload","file":"/etc/shadow"}"#,
            r#"{"cmd":"status","path":"/tmp/x"}"#,
            r#"{"cmd":"blocked","since_secs":1,"top":2,"out":"/tmp/x"}"#,
            r#"{"cmd":"write","file":"/etc/passwd"}"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_round_trip_to_the_right_variant() {
        let reload = Response::Reload(ReloadReply {
            ok: false,
            file: "r.yaml".into(),
            generation: 2,
            summary: Summary {
                sites: 1,
                permits: 2,
                blocks: 0,
                ports: 1,
            },
            diagnostics: vec![],
            omitted: Omitted::default(),
        });
        let back: Response =
            serde_json::from_str(&serde_json::to_string(&reload).unwrap()).unwrap();
        assert!(matches!(back, Response::Reload(r) if r.generation == 2 && !r.ok));
        let err: Response = serde_json::from_str(r#"{"error":"nope"}"#).unwrap();
        assert!(matches!(err, Response::Error { error } if error == "nope"));
        let ex = Response::Explain(Box::new(ExplainReply {
            verdict: "DROP".into(),
            text: "DROP x".into(),
            generation: 1,
            address: "192.0.2.50".parse().unwrap(),
            port: 25,
            proto: Proto::Tcp,
            judged: true,
            mode: Some(Mode::Enforce),
            answer: ExplainAnswer::Unidentified,
            entry: None,
        }));
        let back: Response = serde_json::from_str(&serde_json::to_string(&ex).unwrap()).unwrap();
        assert!(matches!(back, Response::Explain(r) if r.answer == ExplainAnswer::Unidentified));
    }
}
