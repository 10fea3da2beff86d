//! The record of unidentified traffic: which sources tried which judged
//! port, how often, first and last seen.
//!
//! Contract: memory is bounded by the capacity given at construction. When
//! the table is full and a new source arrives, the least recently seen
//! eighth of the table is evicted in one sweep, so a flood of forged sources
//! costs amortised O(log n) per new source and can only push out the
//! sources that have gone quiet longest. Counts are exact for every source
//! still in the table.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::packet::Addr;
use crate::rules::Proto;

/// One source trying one judged port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub src: Addr,
    pub port: u16,
    pub proto: Proto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Packets seen.
    pub count: u64,
    pub first: SystemTime,
    pub last: SystemTime,
    /// The destination of the most recent packet.
    pub last_dst: Addr,
    /// True when the most recent packet was let through (monitor mode).
    pub monitored: bool,
    /// True when a block entry (carve-out) decided it.
    pub blocked: bool,
}

pub struct BlockedTable {
    map: HashMap<Key, Record>,
    capacity: usize,
    evicted: u64,
}

/// Whether an observation created a new record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    New,
    Again,
}

impl BlockedTable {
    pub fn new(capacity: usize) -> BlockedTable {
        let capacity = capacity.max(8);
        BlockedTable {
            map: HashMap::with_capacity(capacity),
            capacity,
            evicted: 0,
        }
    }

    pub fn observe(
        &mut self,
        key: Key,
        dst: Addr,
        at: SystemTime,
        monitored: bool,
        blocked: bool,
    ) -> Seen {
        if let Some(r) = self.map.get_mut(&key) {
            r.count += 1;
            r.last = r.last.max(at);
            r.last_dst = dst;
            r.monitored = monitored;
            r.blocked = blocked;
            return Seen::Again;
        }
        if self.map.len() >= self.capacity {
            self.evict();
        }
        self.map.insert(
            key,
            Record {
                count: 1,
                first: at,
                last: at,
                last_dst: dst,
                monitored,
                blocked,
            },
        );
        Seen::New
    }

    /// Drops the least recently seen eighth (at least one record).
    fn evict(&mut self) {
        let n = (self.capacity / 8).max(1);
        let mut by_age: Vec<(SystemTime, Key)> =
            self.map.iter().map(|(k, r)| (r.last, *k)).collect();
        by_age.select_nth_unstable(n - 1);
        for (_, k) in &by_age[..n] {
            self.map.remove(k);
        }
        self.evicted += n as u64;
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records evicted since start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Records last seen at or after `since`, most recent first.
    pub fn recent(&self, since: SystemTime) -> Vec<(Key, Record)> {
        let mut v: Vec<(Key, Record)> = self
            .map
            .iter()
            .filter(|(_, r)| r.last >= since)
            .map(|(k, r)| (*k, *r))
            .collect();
        v.sort_by(|a, b| b.1.last.cmp(&a.1.last).then(a.0.cmp(&b.0)));
        v
    }

    /// Records last seen at or after `since`, by packet count, highest first.
    pub fn top(&self, since: SystemTime) -> Vec<(Key, Record)> {
        let mut v = self.recent(since);
        v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(b.1.last.cmp(&a.1.last)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(i: u32) -> Key {
        Key {
            src: Addr::V4(0xcb00_7100 + i),
            port: 25,
            proto: Proto::Tcp,
        }
    }

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn counts_first_and_last() {
        let mut b = BlockedTable::new(16);
        let dst = Addr::V4(1);
        assert_eq!(b.observe(key(1), dst, t(10), false, false), Seen::New);
        assert_eq!(b.observe(key(1), dst, t(20), false, false), Seen::Again);
        assert_eq!(b.observe(key(1), dst, t(15), false, true), Seen::Again);
        let r = b.recent(t(0));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].1.count, 3);
        assert_eq!(r[0].1.first, t(10));
        assert_eq!(r[0].1.last, t(20));
        assert!(r[0].1.blocked);
    }

    #[test]
    fn bounded_and_evicts_least_recent() {
        let mut b = BlockedTable::new(64);
        for i in 0..64 {
            b.observe(key(i), Addr::V4(1), t(u64::from(i)), false, false);
        }
        assert_eq!(b.len(), 64);
        // Refresh the oldest: it must survive the next eviction.
        b.observe(key(0), Addr::V4(1), t(1000), false, false);
        b.observe(key(999), Addr::V4(1), t(1001), false, false);
        assert!(b.len() <= 64);
        assert_eq!(b.evicted(), 8);
        let keys: Vec<Key> = b.recent(t(0)).into_iter().map(|(k, _)| k).collect();
        assert!(keys.contains(&key(0)));
        assert!(keys.contains(&key(999)));
        for i in 1..=8 {
            assert!(!keys.contains(&key(i)), "key {i} should have been evicted");
        }
        for i in 9..64 {
            assert!(keys.contains(&key(i)));
        }
        for i in 0..10_000 {
            b.observe(
                key(2000 + i),
                Addr::V4(1),
                t(2000 + u64::from(i)),
                false,
                false,
            );
            assert!(b.len() <= 64);
        }
    }

    #[test]
    fn ordering_and_since() {
        let mut b = BlockedTable::new(16);
        for i in 0..5u32 {
            for _ in 0..(5 - i) {
                b.observe(key(i), Addr::V4(1), t(u64::from(i) * 10), false, false);
            }
        }
        let recent: Vec<u32> = b
            .recent(t(0))
            .iter()
            .map(|(k, _)| match k.src {
                Addr::V4(a) => a - 0xcb00_7100,
                Addr::V6(_) => unreachable!(),
            })
            .collect();
        assert_eq!(recent, vec![4, 3, 2, 1, 0]);
        let top: Vec<u64> = b.top(t(0)).iter().map(|(_, r)| r.count).collect();
        assert_eq!(top, vec![5, 4, 3, 2, 1]);
        assert_eq!(b.recent(t(25)).len(), 2);
    }
}
