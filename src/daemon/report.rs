//! The reporter thread: turns the workers' events into log lines and the
//! blocked-sources record, off the hot path.
//!
//! Logging policy, so that a flood of forged sources cannot flood the log:
//! each unidentified source is logged once, when first seen on a port (with
//! the destination it tried), within a budget of lines per second; after
//! that it is only counted, and a summary line per interval says how much
//! was seen and how many first sightings the budget kept out of the log.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{info, warn};

use super::Shared;
use super::blocked::{Key, Seen};
use crate::decision::Unidentified;
use crate::packet::{Addr, Malformed};
use crate::rules::Proto;

/// What a worker tells the reporter. Plain data, no allocation.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    Unidentified {
        src: Addr,
        dst: Addr,
        port: u16,
        proto: Proto,
        why: Unidentified,
        /// Let through (monitor mode) rather than dropped.
        monitored: bool,
    },
    Malformed {
        queue: u16,
        why: Malformed,
    },
    /// The daemon is stopping: write the last summary and return.
    Shutdown,
}

/// Events a worker gathers before it sends them as one message.
pub const BATCH_EVENTS: usize = 256;

/// Events gathered by a worker over several of its batches and sent as one
/// message, when nearly full or after [`super::worker::REPORT_DELAY`]: a
/// flood of unidentified packets costs the channel, and the reporter's
/// wake-ups, one operation per few hundred packets, not one per packet (at
/// 60k packets/s that was 20k context switches a second more than the
/// packets needed). A fixed array, so gathering never allocates.
#[derive(Clone, Copy)]
pub struct Batch {
    len: usize,
    events: [Event; BATCH_EVENTS],
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            len: 0,
            events: [Event::Shutdown; BATCH_EVENTS],
        }
    }
}

impl Batch {
    /// A batch that tells the reporter to stop.
    pub fn shutdown() -> Self {
        let mut b = Batch::default();
        b.push(Event::Shutdown);
        b
    }

    /// Adds an event; false (the event is not kept) when the batch is full.
    pub fn push(&mut self, ev: Event) -> bool {
        match self.events.get_mut(self.len) {
            Some(slot) => {
                *slot = ev;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn events(&self) -> &[Event] {
        &self.events[..self.len]
    }
}

/// Distinct sources counted exactly per summary interval; beyond this the
/// summary says "at least".
const MAX_INTERVAL_SOURCES: usize = 16_384;

/// Log lines for first sightings allowed per second, and the burst.
const LINES_PER_SEC: f64 = 10.0;
const LINES_BURST: f64 = 50.0;

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * LINES_PER_SEC).min(LINES_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Default)]
struct Interval {
    dropped: u64,
    monitored: u64,
    sources: HashSet<(Addr, u16, Proto)>,
    new_sources: u64,
    not_logged: u64,
    malformed: [u64; Malformed::ALL.len()],
}

pub struct Reporter {
    pub shared: Arc<Shared>,
    pub interval: Duration,
}

impl Reporter {
    /// Runs until told to shut down, or every sender is gone.
    pub fn run(self, rx: Receiver<Batch>) {
        let mut bucket = Bucket {
            tokens: LINES_BURST,
            at: Instant::now(),
        };
        let mut cur = Interval::default();
        let mut began = Instant::now();
        let mut next = began + self.interval;
        loop {
            // Due even when events never stop coming.
            if Instant::now() >= next {
                summarise(&cur, began.elapsed());
                cur = Interval::default();
                began = Instant::now();
                next = began + self.interval;
            }
            let batch = match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(b) => b,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    summarise(&cur, began.elapsed());
                    return;
                }
            };
            // One clock reading per batch: its packets came within one
            // worker wake-up.
            let (now, wall) = (Instant::now(), SystemTime::now());
            for &ev in batch.events() {
                match ev {
                    Event::Unidentified {
                        src,
                        dst,
                        port,
                        proto,
                        why,
                        monitored,
                    } => {
                        if monitored {
                            cur.monitored += 1;
                        } else {
                            cur.dropped += 1;
                        }
                        if cur.sources.len() < MAX_INTERVAL_SOURCES {
                            cur.sources.insert((src, port, proto));
                        }
                        let seen = self.shared.blocked().observe(
                            Key { src, port, proto },
                            dst,
                            wall,
                            monitored,
                            why == Unidentified::Blocked,
                        );
                        if seen == Seen::New {
                            cur.new_sources += 1;
                            if bucket.take(now) {
                                let what = match (monitored, why) {
                                    (false, Unidentified::NoEntry) => "dropped unidentified",
                                    (false, Unidentified::Blocked) => "dropped blocked",
                                    (true, Unidentified::NoEntry) => {
                                        "monitor: let through unidentified"
                                    }
                                    (true, Unidentified::Blocked) => "monitor: let through blocked",
                                };
                                warn!(
                                    "{what} {src} -> {dst} port {port}/{proto} (first from this source; later packets are counted)"
                                );
                            } else {
                                cur.not_logged += 1;
                            }
                        }
                    }
                    Event::Shutdown => {
                        summarise(&cur, began.elapsed());
                        return;
                    }
                    Event::Malformed { queue, why } => {
                        let n = &mut cur.malformed[why as usize];
                        if *n == 0 {
                            warn!(
                                "dropped a malformed packet on queue {queue}: {} (further ones are counted)",
                                why.as_str()
                            );
                        }
                        *n += 1;
                    }
                }
            }
        }
    }
}

fn summarise(cur: &Interval, span: Duration) {
    let malformed: u64 = cur.malformed.iter().sum();
    if cur.dropped + cur.monitored + malformed == 0 {
        return;
    }
    info!(
        "last {}s: {} unidentified packets dropped, {} let through in monitor mode, from {}{} source/port pairs ({} new, {} of those not logged: rate limit); {} malformed dropped",
        span.as_secs(),
        cur.dropped,
        cur.monitored,
        if cur.sources.len() >= MAX_INTERVAL_SOURCES {
            "at least "
        } else {
            ""
        },
        cur.sources.len(),
        cur.new_sources,
        cur.not_logged,
        malformed
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_holds_one_event_per_packet_of_a_worker_batch_and_no_more() {
        let mut b = Batch::default();
        assert!(b.is_empty());
        let ev = |queue| Event::Malformed {
            queue,
            why: Malformed::ALL[0],
        };
        for q in 0..BATCH_EVENTS {
            assert!(b.push(ev(q as u16)));
        }
        assert!(!b.push(ev(999)), "a full batch refuses the next event");
        assert_eq!(b.len(), BATCH_EVENTS);
        let queues: Vec<u16> = b
            .events()
            .iter()
            .map(|e| match e {
                Event::Malformed { queue, .. } => *queue,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(queues, (0..BATCH_EVENTS as u16).collect::<Vec<_>>());
        b.clear();
        assert!(b.is_empty() && b.events().is_empty());
        assert!(matches!(Batch::shutdown().events(), [Event::Shutdown]));
    }
}
