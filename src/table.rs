//! The compiled permit table: what the workers consult for every packet.
//!
//! Contract: [`Table::compile`] turns a validated [`Ruleset`] into one
//! longest-prefix table per address family whose value already holds the
//! effective answer for every judged port, so judging an address is one
//! longest-prefix lookup and one bit test. Compilation resolves the
//! "most specific entry that lists the port wins" rule once, ahead of time:
//! each stored prefix carries, for every judged port, the answer of the most
//! specific entry at or above it that lists that port. The result must decide
//! exactly like [`Ruleset::deciding_entry`], the naive reference; the tests
//! and the property test hold it to that.
//!
//! The table is immutable once built; a reload builds a new one and swaps it
//! in whole.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;

use crate::packet::Addr;
use crate::rules::{EntryKind, Mode, PortPolicy, Proto, Ruleset};

/// Index of a judged port/protocol in [`Table::policies`].
pub type Slot = u16;

/// The answer an address's deciding entry gives for one judged port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    /// No entry covering the address lists the port.
    None,
    Permit,
    Block,
}

/// Row 0 is the answer of an address no entry covers: nothing permitted,
/// nothing blocked.
const EMPTY_ROW: u32 = 0;

pub struct Table {
    /// `slots[proto_index * 65536 + port]`: 0 when the port is not judged,
    /// otherwise its slot + 1. One array access decides whether a packet is
    /// ours to judge at all.
    slots: Box<[u16]>,
    policies: Vec<PortPolicy>,
    /// u64 words per bit vector: `ceil(policies / 64)`, at least 1.
    words: usize,
    /// Deduplicated answer rows, `2 * words` u64 each: permit bits then block
    /// bits, bit `slot` in each.
    rows: Vec<u64>,
    /// Longest-prefix table of both families: prefix -> row id.
    lpm: IpNetworkTable<u32>,
}

fn proto_index(p: Proto) -> usize {
    match p {
        Proto::Tcp => 0,
        Proto::Udp => 1,
    }
}

impl Table {
    pub fn compile(rules: &Ruleset) -> Table {
        let mut slots = vec![0u16; 2 * 65536].into_boxed_slice();
        for (i, p) in rules.ports.iter().enumerate() {
            let slot = u16::try_from(i + 1).expect("loader caps judged ports below u16::MAX");
            slots[proto_index(p.proto) * 65536 + usize::from(p.port)] = slot;
        }
        let words = rules.ports.len().div_ceil(64).max(1);

        // Group entries by prefix, then visit prefixes from least to most
        // specific: when a prefix is visited, every prefix that covers it is
        // already in the table, so its longest match is its parent and the
        // parent's row is already final.
        let mut by_prefix: HashMap<IpNetwork, Vec<usize>> = HashMap::new();
        for (i, e) in rules.entries.iter().enumerate() {
            by_prefix.entry(e.prefix).or_default().push(i);
        }
        let mut prefixes: Vec<IpNetwork> = by_prefix.keys().copied().collect();
        prefixes.sort_unstable_by_key(|p| (p.netmask(), *p));

        let mut rows = vec![0u64; 2 * words];
        let mut row_ids: HashMap<Box<[u64]>, u32> = HashMap::new();
        row_ids.insert(rows.clone().into_boxed_slice(), EMPTY_ROW);
        let mut lpm = IpNetworkTable::new();
        let mut row = vec![0u64; 2 * words];

        for prefix in prefixes {
            let parent = lpm
                .longest_match(prefix.network_address())
                .map_or(EMPTY_ROW, |(_, r)| *r) as usize;
            row.copy_from_slice(&rows[parent * 2 * words..(parent + 1) * 2 * words]);

            for &i in &by_prefix[&prefix] {
                let e = &rules.entries[i];
                for (slot, policy) in rules.ports.iter().enumerate() {
                    if !e.lists(policy.port, policy.proto) {
                        continue;
                    }
                    let (w, bit) = (slot / 64, 1u64 << (slot % 64));
                    let (set, clear) = match e.kind {
                        EntryKind::Permit => (w, words + w),
                        EntryKind::Block => (words + w, w),
                    };
                    row[set] |= bit;
                    row[clear] &= !bit;
                }
            }

            let next = u32::try_from(row_ids.len()).expect("fewer than 2^32 distinct rows");
            let id = *row_ids
                .entry(row.clone().into_boxed_slice())
                .or_insert_with(|| {
                    rows.extend_from_slice(&row);
                    next
                });
            lpm.insert(prefix, id);
        }

        Table {
            slots,
            policies: rules.ports.clone(),
            words,
            rows,
            lpm,
        }
    }

    /// The slot of a judged port, or `None` when the gate does not judge it.
    #[inline]
    pub fn slot(&self, proto: Proto, port: u16) -> Option<Slot> {
        let s = self.slots[proto_index(proto) * 65536 + usize::from(port)];
        s.checked_sub(1)
    }

    pub fn policies(&self) -> &[PortPolicy] {
        &self.policies
    }

    #[inline]
    pub fn mode(&self, slot: Slot) -> Mode {
        self.policies[usize::from(slot)].mode
    }

    /// The row id of the longest prefix covering `addr`.
    #[inline]
    fn row_of(&self, addr: Addr) -> usize {
        let hit = match addr {
            Addr::V4(a) => self
                .lpm
                .longest_match_ipv4(Ipv4Addr::from(a))
                .map(|(_, r)| *r),
            Addr::V6(a) => self
                .lpm
                .longest_match_ipv6(Ipv6Addr::from(a))
                .map(|(_, r)| *r),
        };
        hit.unwrap_or(EMPTY_ROW) as usize
    }

    /// The answer of `addr`'s deciding entry for a judged port.
    #[inline]
    pub fn answer(&self, addr: Addr, slot: Slot) -> Answer {
        let base = self.row_of(addr) * 2 * self.words;
        let (w, bit) = (usize::from(slot) / 64, 1u64 << (slot % 64));
        if self.rows[base + w] & bit != 0 {
            Answer::Permit
        } else if self.rows[base + self.words + w] & bit != 0 {
            Answer::Block
        } else {
            Answer::None
        }
    }

    /// Prefixes stored, IPv4 and IPv6.
    pub fn len(&self) -> (usize, usize) {
        self.lpm.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lpm.is_empty()
    }

    /// Distinct answer rows (row 0, "no entry", included).
    pub fn distinct_rows(&self) -> usize {
        self.rows.len() / (2 * self.words)
    }
}
