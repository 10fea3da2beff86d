//! One worker per netfilter queue: receive a batch, decide, verdict.
//!
//! The loop holds no lock, does not allocate, and does not log: outcomes go
//! to counters, and unidentified traffic to the reporter, gathered over
//! batches and sent as one message over a bounded channel with `try_send` (a
//! full channel is counted, never waited on).
//! The packets of a batch are decided together ([`decision::decide_batch`]),
//! with the rules fetched after they were received, through an
//! `arc_swap::Cache` (a cached pointer compared, no barrier), so a reload is
//! in force for the next batch.

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

/// Packets handled per batch: one waiting receive, up to this many in all,
/// decided together, one send of the verdicts.
const BATCH: usize = crate::queue::MAX_BATCH;

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
    let mut verdicts = [decision::UNDECIDED; BATCH];
    let mut pending = Pending {
        batch: Batch::default(),
        since: None,
        events,
        stats,
    };
    while !stop.load(Ordering::Relaxed) {
        stats.beat();
        if fault.panic_after.is_some_and(|n| stats.packets.get() >= n) {
            panic!(
                "injected fault: worker for queue {queue} panics after {} packets",
                stats.packets.get()
            );
        }
        let b = q.serve_batch(IDLE_WAKE, BATCH, |packets, accept| {
            // The rules in force when the batch is judged, after all its
            // packets arrived, not when the wait for them began: once a
            // reload has answered, no packet received after it is judged by
            // the old table. (A cached pointer compared: no barrier, no
            // reference count.)
            let rules: &Active = current.load();
            let verdicts = &mut verdicts[..packets.len()];
            decision::decide_batch(&rules.table, packets, verdicts);
            for (v, accept) in verdicts.iter().zip(accept) {
                stats.record(v.decision);
                if let Some(id) = v
                    .slot
                    .and_then(|s| rules.port_ids.get(usize::from(s)).copied().flatten())
                    && let Some(p) = stats.ports.get(usize::from(id))
                {
                    p.record(v.decision);
                }
                if let Some(ev) = event_for(queue, v)
                    && !pending.batch.push(ev)
                {
                    stats.channel_full.bump();
                }
                *accept = v.decision.is_accept();
            }
        })?;
        pending.after_batch(b.packets == 0);
        stats.enobufs.add(b.enobufs);
        stats.protocol_errors.add(b.protocol_errors);
        stats.verdict_errors.add(b.verdict_send_errors);
    }
    // What is still gathered goes out when `pending` drops.
    let _ = q.unbind();
    Ok(())
}

/// The reports a worker has gathered for the reporter. Whatever is left
/// goes out when the worker ends, however it ends: a returned error, or a
/// panic unwinding through here.
struct Pending<'a> {
    batch: Batch,
    /// When the oldest of them was gathered.
    since: Option<Instant>,
    events: &'a Sender<Batch>,
    stats: &'a QueueStats,
}

impl Pending<'_> {
    /// After a batch of packets (or an idle wait, `idle`): sends what was
    /// gathered when the next batch might not fit, when the worker is
    /// idle, or when the oldest report has waited [`REPORT_DELAY`].
    fn after_batch(&mut self, idle: bool) {
        if self.batch.is_empty() {
            return;
        }
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        let room = BATCH_EVENTS - self.batch.len();
        if room < BATCH || idle || now.duration_since(since) >= REPORT_DELAY {
            self.send();
        }
    }

    /// Sends what was gathered; a full channel counts it as lost.
    fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if let Err(TrySendError::Full(_)) = self.events.try_send(self.batch) {
            self.stats.channel_full.add(self.batch.len() as u64);
        }
        self.batch.clear();
        self.since = None;
    }
}

impl std::ops::Drop for Pending<'_> {
    fn drop(&mut self) {
        self.send();
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
