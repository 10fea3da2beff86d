//! Per-worker counters: written by one worker thread, read by anyone.
//!
//! Each counter has a single writer, so an update is a relaxed load and
//! store (no locked read-modify-write on the hot path); readers see a value
//! at most one packet stale.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::decision::{Accept, Decision, Drop, Unidentified};
use crate::packet::Malformed;

#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn bump(&self) {
        self.add(1);
    }

    #[inline]
    pub fn add(&self, n: u64) {
        // Single writer: no other thread stores to this counter.
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Distinct judged ports counted per queue over the daemon's life.
pub const MAX_PORT_IDS: usize = 4096;

/// What happened on one judged port.
#[derive(Default, Debug)]
pub struct PortCounters {
    /// Accepted: the source or destination is identified.
    pub identified: Counter,
    /// Unidentified and dropped (enforce mode).
    pub dropped: Counter,
    /// Unidentified and let through (monitor mode).
    pub monitored: Counter,
}

impl PortCounters {
    #[inline]
    pub fn record(&self, d: Decision) {
        match d {
            Decision::Accept(Accept::SourcePermit | Accept::DestinationPermit) => {
                self.identified.bump()
            }
            Decision::Accept(Accept::Monitored(_)) => self.monitored.bump(),
            Decision::Drop(Drop::Unidentified(_)) => self.dropped.bump(),
            _ => {}
        }
    }
}

/// What one queue's worker has done since start.
#[derive(Debug)]
pub struct QueueStats {
    pub packets: Counter,
    pub accepted: Counter,
    pub dropped: Counter,
    pub accepted_source_permit: Counter,
    pub accepted_destination_permit: Counter,
    pub accepted_unjudged: Counter,
    pub accepted_later_fragment: Counter,
    /// Unidentified on a monitor port: accepted, reported.
    pub monitored: Counter,
    /// Unidentified on an enforce port: dropped.
    pub dropped_unidentified: Counter,
    /// Of the unidentified (dropped or monitored), those a block decided.
    pub unidentified_blocked: Counter,
    pub malformed: [Counter; Malformed::ALL.len()],
    /// recv() reported ENOBUFS: the socket buffer overflowed and the kernel
    /// dropped (or, with --fail-open, accepted) packets we never saw.
    pub enobufs: Counter,
    /// Reports lost because the reporter's channel was full.
    pub channel_full: Counter,
    /// Sends of verdicts the kernel refused.
    pub verdict_errors: Counter,
    /// Kernel messages we could not read, or errors it returned for our
    /// verdicts.
    pub protocol_errors: Counter,
    /// Milliseconds since the process started, when the worker last went
    /// round its loop: at least every [`super::worker::IDLE_WAKE`] when
    /// healthy, busy or idle.
    pub heartbeat_ms: Counter,
    /// Per judged port, by the daemon's stable port id.
    pub ports: Box<[PortCounters]>,
}

impl Default for QueueStats {
    fn default() -> QueueStats {
        QueueStats {
            packets: Counter::default(),
            accepted: Counter::default(),
            dropped: Counter::default(),
            accepted_source_permit: Counter::default(),
            accepted_destination_permit: Counter::default(),
            accepted_unjudged: Counter::default(),
            accepted_later_fragment: Counter::default(),
            monitored: Counter::default(),
            dropped_unidentified: Counter::default(),
            unidentified_blocked: Counter::default(),
            malformed: Default::default(),
            enobufs: Counter::default(),
            channel_full: Counter::default(),
            verdict_errors: Counter::default(),
            protocol_errors: Counter::default(),
            heartbeat_ms: Counter::default(),
            ports: (0..MAX_PORT_IDS).map(|_| PortCounters::default()).collect(),
        }
    }
}

/// A clock shared by heartbeats and their readers.
pub fn uptime_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl QueueStats {
    /// Marks the worker alive now.
    #[inline]
    pub fn beat(&self) {
        self.heartbeat_ms.0.store(uptime_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the worker's last heartbeat.
    pub fn since_beat_ms(&self) -> u64 {
        uptime_ms().saturating_sub(self.heartbeat_ms.get())
    }

    #[inline]
    pub fn record(&self, d: Decision) {
        self.packets.bump();
        match d {
            Decision::Accept(a) => {
                self.accepted.bump();
                match a {
                    Accept::SourcePermit => self.accepted_source_permit.bump(),
                    Accept::DestinationPermit => self.accepted_destination_permit.bump(),
                    Accept::Unjudged => self.accepted_unjudged.bump(),
                    Accept::LaterFragment => self.accepted_later_fragment.bump(),
                    Accept::Monitored(u) => {
                        self.monitored.bump();
                        if u == Unidentified::Blocked {
                            self.unidentified_blocked.bump();
                        }
                    }
                }
            }
            Decision::Drop(dr) => {
                self.dropped.bump();
                match dr {
                    Drop::Unidentified(u) => {
                        self.dropped_unidentified.bump();
                        if u == Unidentified::Blocked {
                            self.unidentified_blocked.bump();
                        }
                    }
                    Drop::Malformed(m) => self.malformed[m as usize].bump(),
                }
            }
        }
    }

    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().map(Counter::get).sum()
    }
}
