//! One worker per netfilter queue: receive a batch, decide, verdict.
//!
//! The loop holds no lock, does not allocate, and does not log: outcomes go
//! to counters, and unidentified traffic to the reporter, gathered over
//! batches and sent as one message over a bounded channel with `try_send` (a
//! full channel is counted, never waited on).
//! The rules are loaded once per batch through an `arc_swap::Cache`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Cache};
use crossbeam_channel::{Sender, TrySendError};

use super::Active;
use super::report::{BATCH_EVENTS, Batch, Event};
use super::stats::QueueStats;
use crate::decision::{self, Decision, Drop};
use crate::queue::{Queue, QueueError};
use crate::rules::Proto;

/// Packets handled per batch: one poll, up to this many receives, one send.
const BATCH: usize = 64;

/// How long gathered reports may wait for more before they go to the
/// reporter (an idle worker sends them at its next wake, within
/// [`IDLE_WAKE`]).
pub const REPORT_DELAY: Duration = Duration::from_millis(100);

// A batch of packets always fits in what is gathered, with room to spare.
const _: () = assert!(BATCH_EVENTS >= 2 * BATCH);

/// How long a worker waits for packets before checking for shutdown and
/// beating its heart; an idle worker is not a stalled one.
pub const IDLE_WAKE: Duration = Duration::from_millis(250);

/// Faults a test can inject into a worker.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fault {
    /// Panic after judging this many packets.
    pub panic_after: Option<u64>,
}

/// Serves one queue until `stop` is set (Ok) or an error it cannot continue
/// after (Err). On stop the queue is unbound.
pub fn serve(
    q: &mut Queue,
    active: &ArcSwap<Active>,
    stats: &QueueStats,
    events: &Sender<Batch>,
    stop: &AtomicBool,
    fault: Fault,
) -> Result<(), QueueError> {
    let queue = q.number();
    let mut current = Cache::new(active);
    let mut pending = Batch::default();
    let mut pending_since = None;
    while !stop.load(Ordering::Relaxed) {
        stats.beat();
        if fault.panic_after.is_some_and(|n| stats.packets.get() >= n) {
            panic!(
                "injected fault: worker for queue {queue} panics after {} packets",
                stats.packets.get()
            );
        }
        let rules: &Active = current.load();
        let b = q.serve_batch(IDLE_WAKE, BATCH, |payload, ethertype| {
            let v = decision::decide_queued(&rules.table, payload, ethertype);
            stats.record(v.decision);
            if let Some(id) = v
                .slot
                .and_then(|s| rules.port_ids.get(usize::from(s)).copied().flatten())
            {
                if let Some(p) = stats.ports.get(usize::from(id)) {
                    p.record(v.decision);
                }
            }
            if let Some(ev) = event_for(queue, &v) {
                if !pending.push(ev) {
                    stats.channel_full.bump();
                }
            }
            v.decision.is_accept()
        })?;
        if !pending.is_empty() {
            let now = Instant::now();
            let since = *pending_since.get_or_insert(now);
            let room = BATCH_EVENTS - pending.len();
            if room < BATCH || b.packets == 0 || now.duration_since(since) >= REPORT_DELAY {
                send(events, &mut pending, stats);
                pending_since = None;
            }
        }
        stats.enobufs.add(b.enobufs);
        stats.protocol_errors.add(b.protocol_errors);
        stats.verdict_errors.add(b.verdict_send_errors);
    }
    send(events, &mut pending, stats);
    let _ = q.unbind();
    Ok(())
}

fn send(events: &Sender<Batch>, pending: &mut Batch, stats: &QueueStats) {
    if pending.is_empty() {
        return;
    }
    if let Err(TrySendError::Full(_)) = events.try_send(*pending) {
        stats.channel_full.add(pending.len() as u64);
    }
    pending.clear();
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
