//! The record of unidentified traffic: which sources tried which judged
//! port, how often, first and last seen.
//!
//! Contract: memory is fixed by the capacity given at construction (about
//! 128 bytes per entry of capacity, allocated up front). When
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
    map: HashMap<Packed, Entry>,
    capacity: usize,
    evicted: u64,
    /// Scratch space for eviction, kept so that evicting allocates nothing.
    by_age: Vec<(u32, Packed)>,
}

/// A [`Key`] in 20 bytes: the address as 16 bytes, the family and protocol
/// in one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Packed {
    addr: [u8; 16],
    port: u16,
    /// Bit 0: IPv6; bit 1: UDP.
    kind: u8,
}

/// A [`Record`] in 40 bytes: times as whole seconds since the Unix epoch.
#[derive(Clone, Copy, Debug)]
struct Entry {
    count: u64,
    first: u32,
    last: u32,
    last_dst: [u8; 16],
    /// Bit 0: `last_dst` is IPv6; bit 1: monitored; bit 2: blocked.
    flags: u8,
}

fn pack_addr(a: Addr) -> ([u8; 16], bool) {
    match a {
        Addr::V4(v) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v.to_be_bytes());
            (b, false)
        }
        Addr::V6(v) => (v.to_be_bytes(), true),
    }
}

fn unpack_addr(b: [u8; 16], v6: bool) -> Addr {
    if v6 {
        Addr::V6(u128::from_be_bytes(b))
    } else {
        Addr::V4(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl Packed {
    fn new(k: Key) -> Packed {
        let (addr, v6) = pack_addr(k.src);
        Packed {
            addr,
            port: k.port,
            kind: u8::from(v6) | (u8::from(k.proto == Proto::Udp) << 1),
        }
    }

    fn key(self) -> Key {
        Key {
            src: unpack_addr(self.addr, self.kind & 1 != 0),
            port: self.port,
            proto: if self.kind & 2 != 0 {
                Proto::Udp
            } else {
                Proto::Tcp
            },
        }
    }
}

fn secs(t: SystemTime) -> u32 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

fn time(s: u32) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(s))
}

impl Entry {
    fn record(&self) -> Record {
        Record {
            count: self.count,
            first: time(self.first),
            last: time(self.last),
            last_dst: unpack_addr(self.last_dst, self.flags & 1 != 0),
            monitored: self.flags & 2 != 0,
            blocked: self.flags & 4 != 0,
        }
    }

    fn set_last(&mut self, dst: Addr, monitored: bool, blocked: bool) {
        let (d, v6) = pack_addr(dst);
        self.last_dst = d;
        self.flags = u8::from(v6) | (u8::from(monitored) << 1) | (u8::from(blocked) << 2);
    }
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
            // Twice the entries it will ever hold: removals leave tombstones,
            // and a hash table at most half full cleans them up in place
            // instead of growing, so memory is fixed from the start.
            map: HashMap::with_capacity(2 * capacity),
            capacity,
            evicted: 0,
            by_age: Vec::with_capacity(capacity),
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
        let k = Packed::new(key);
        let at = secs(at);
        if let Some(e) = self.map.get_mut(&k) {
            e.count += 1;
            e.last = e.last.max(at);
            e.set_last(dst, monitored, blocked);
            return Seen::Again;
        }
        if self.map.len() >= self.capacity {
            self.evict();
        }
        let mut e = Entry {
            count: 1,
            first: at,
            last: at,
            last_dst: [0; 16],
            flags: 0,
        };
        e.set_last(dst, monitored, blocked);
        self.map.insert(k, e);
        Seen::New
    }

    /// Drops the least recently seen eighth (at least one record).
    fn evict(&mut self) {
        let n = (self.capacity / 8).max(1);
        self.by_age.clear();
        self.by_age
            .extend(self.map.iter().map(|(k, e)| (e.last, *k)));
        self.by_age.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        for (_, k) in &self.by_age[..n] {
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
        let since = secs(since);
        let mut v: Vec<(Key, Record)> = self
            .map
            .iter()
            .filter(|(_, e)| e.last >= since)
            .map(|(k, e)| (k.key(), e.record()))
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
