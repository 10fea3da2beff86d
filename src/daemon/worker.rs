//! One worker per netfilter queue: receive, decide, verdict.
//!
//! This is the only module that talks to the kernel's queue (through the
//! `nfq` crate). The loop holds no lock, does not allocate once warm, and
//! does not log: outcomes go to counters, and unidentified traffic to the
//! reporter over a bounded channel with `try_send` (a full channel is
//! counted, never waited on). Every packet received gets a verdict.

use std::io;
use std::sync::Arc;

use arc_swap::{ArcSwap, Cache};
use crossbeam_channel::{Sender, TrySendError};
use thiserror::Error;

use super::Active;
use super::report::Event;
use super::stats::QueueStats;
use crate::decision::{self, Decision, Drop};
use crate::rules::Proto;

/// Bytes of each packet we ask the kernel for: the largest IPv4 header (60)
/// or an IPv6 header with a generous extension-header chain, plus the four
/// port bytes of the transport header. A packet whose ports lie beyond this
/// is judged malformed and dropped (RFC 7112 asks for the whole header chain
/// in the first fragment; we ask for it in the first 256 bytes).
pub const COPY_RANGE: u16 = 256;

#[derive(Debug, Error)]
pub enum QueueError {
    /// Opening the netlink socket failed (needs CAP_NET_ADMIN).
    #[error("cannot open a netfilter queue socket: {0} (portgate needs CAP_NET_ADMIN)")]
    Open(#[source] io::Error),
    /// Binding failed, typically because another process holds the queue.
    #[error("cannot bind netfilter queue {queue}: {source}{hint}")]
    Bind {
        queue: u16,
        #[source]
        source: io::Error,
        hint: &'static str,
    },
    /// A queue setting was refused.
    #[error("cannot configure netfilter queue {queue} ({what}): {source}")]
    Config {
        queue: u16,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// Receiving failed with an error we cannot continue after.
    #[error("receiving from netfilter queue {queue} failed: {source}")]
    Recv {
        queue: u16,
        #[source]
        source: io::Error,
    },
}

pub struct QueueConfig {
    pub queue: u16,
    pub fail_open: bool,
    pub maxlen: u32,
}

/// Opens, binds and configures one queue.
pub fn open(cfg: &QueueConfig) -> Result<nfq::Queue, QueueError> {
    let queue = cfg.queue;
    let mut q = nfq::Queue::open().map_err(QueueError::Open)?;
    q.bind(queue).map_err(|source| {
        let hint = match source.raw_os_error() {
            Some(libc::EBUSY) => {
                " (another process already serves this queue: another portgate, or an IDS such as suricata?)"
            }
            Some(libc::EPERM) => " (portgate needs CAP_NET_ADMIN)",
            _ => "",
        };
        QueueError::Bind {
            queue,
            source,
            hint,
        }
    })?;
    let cfg_err = |what| {
        move |source| QueueError::Config {
            queue,
            what,
            source,
        }
    };
    q.set_copy_range(queue, COPY_RANGE)
        .map_err(cfg_err("copy range"))?;
    q.set_queue_max_len(queue, cfg.maxlen)
        .map_err(cfg_err("queue length"))?;
    q.set_fail_open(queue, cfg.fail_open)
        .map_err(cfg_err("fail-open"))?;
    q.set_recv_enobufs(true)
        .map_err(cfg_err("ENOBUFS reporting"))?;
    Ok(q)
}

/// Serves one queue until an error it cannot continue after.
pub fn serve(
    queue: u16,
    mut q: nfq::Queue,
    active: &ArcSwap<Active>,
    stats: &QueueStats,
    events: &Sender<Event>,
) -> Result<(), QueueError> {
    // A cache makes the per-packet load a generation check, not a full
    // arc-swap load.
    let mut current = Cache::new(active);
    loop {
        let mut msg = match q.recv() {
            Ok(m) => m,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                stats.enobufs.bump();
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(source) => return Err(QueueError::Recv { queue, source }),
        };
        let table: &Arc<Active> = current.load();
        let v = decision::decide(&table.table, msg.get_payload());
        msg.set_verdict(if v.decision.is_accept() {
            nfq::Verdict::Accept
        } else {
            nfq::Verdict::Drop
        });
        stats.record(v.decision);
        if let Some(ev) = event_for(queue, &v) {
            if let Err(TrySendError::Full(_)) = events.try_send(ev) {
                stats.channel_full.bump();
            }
        }
        if q.verdict(msg).is_err() {
            stats.verdict_errors.bump();
        }
    }
}

fn event_for(queue: u16, v: &decision::Verdict) -> Option<Event> {
    match v.decision {
        Decision::Drop(Drop::Malformed(why)) => Some(Event::Malformed { queue, why }),
        d => {
            let why = d.unidentified()?;
            let p = v.packet?;
            Some(Event::Unidentified {
                src: p.src,
                dst: p.dst,
                port: p.ports?.dst,
                proto: Proto::from_number(p.proto)?,
                why,
                monitored: d.is_accept(),
            })
        }
    }
}
