//! The compiled permit table: what the workers consult for every packet.
//!
//! Contract: [`Table::compile`] turns a validated [`Ruleset`] into one
//! longest-prefix table per address family whose value already holds the
//! effective answer for every judged port, so judging an address is one
//! longest-prefix lookup and one read of a two-bit answer. Compilation resolves the
//! "most specific entry that lists the port wins" rule once, ahead of time:
//! each stored prefix carries, for every judged port, the answer of the most
//! specific entry at or above it that lists that port. The result must decide
//! exactly like [`Ruleset::deciding_entry`], the naive reference; the tests
//! and the property test hold it to that.
//!
//! The longest-prefix tables are [`crate::lpm::Lpm`]s, built from the list
//! of prefixes with their rows. Rows are resolved in one pass over the
//! prefixes in trie order (a prefix after all that cover it), keeping a stack
//! of the prefixes still open: the innermost open prefix is the parent.
//!
//! The table is immutable once built; a reload builds a new one and swaps it
//! in whole.

use std::collections::HashMap;

use ip_network::IpNetwork;

use crate::lpm::{Key, Lpm};
use crate::packet::Addr;
use crate::rules::{EntryKind, Mode, PortPolicy, Proto, Ruleset};

/// Index of a judged port/protocol in [`Table::policies`].
pub type Slot = u16;

/// The answer an address's deciding entry gives for one judged port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Answer {
    /// No entry covering the address lists the port.
    None = 0,
    Permit = 1,
    Block = 2,
}

/// Row 0 is the answer of an address no entry covers: nothing permitted,
/// nothing blocked.
pub const EMPTY_ROW: u32 = 0;

pub struct Table {
    /// `slots[proto_index * 65536 + port]`: 0 when the port is not judged,
    /// otherwise its slot + 1. One array access decides whether a packet is
    /// ours to judge at all.
    slots: Box<[u16]>,
    policies: Vec<PortPolicy>,
    /// u64 words per answer row: `ceil(policies / 32)`, at least 1.
    words: usize,
    /// Deduplicated answer rows, `words` u64 each: the [`Answer`] for slot
    /// `s` in the two bits from `2 * (s % 32)` of word `s / 32`, so that a
    /// row's answer for a port is one read.
    rows: Vec<u64>,
    /// Longest-prefix tables, prefix -> row id.
    v4: Lpm<u32>,
    v6: Lpm<u128>,
}

/// Every stored prefix with its answer row, per family, in trie order (a
/// prefix after every prefix that covers it): what [`Table`]'s lookup
/// structures are built from, and what reference structures are built from
/// in tests and benchmarks.
#[derive(Clone, Debug, Default)]
pub struct PrefixRows {
    pub v4: Vec<(u32, u8, u32)>,
    pub v6: Vec<(u128, u8, u32)>,
}

fn proto_index(p: Proto) -> usize {
    match p {
        Proto::Tcp => 0,
        Proto::Udp => 1,
    }
}

/// Answer rows under construction, deduplicated.
struct RowSet {
    words: usize,
    rows: Vec<u64>,
    ids: HashMap<Box<[u64]>, u32>,
}

impl RowSet {
    fn new(words: usize) -> RowSet {
        let empty = vec![0u64; words];
        let mut ids = HashMap::new();
        ids.insert(empty.clone().into_boxed_slice(), EMPTY_ROW);
        RowSet {
            words,
            rows: empty,
            ids,
        }
    }

    fn row(&self, id: u32) -> &[u64] {
        let w = self.words;
        &self.rows[id as usize * w..(id as usize + 1) * w]
    }

    fn intern(&mut self, row: &[u64]) -> u32 {
        if let Some(&id) = self.ids.get(row) {
            return id;
        }
        let id = u32::try_from(self.ids.len()).expect("fewer than 2^32 distinct rows");
        self.rows.extend_from_slice(row);
        self.ids.insert(row.into(), id);
        id
    }
}

/// Resolves the rows of one family's prefixes. `entries` holds
/// `(network, length, entry index)`; the result holds one
/// `(network, length, row)` per distinct prefix, in trie order.
fn resolve<K: Key>(
    marks: &Marks,
    mut entries: Vec<(K, u8, usize)>,
    rows: &mut RowSet,
) -> Vec<(K, u8, u32)> {
    // Trie order: when a prefix is visited, every prefix that covers it has
    // been, and is still on the stack of open prefixes; the innermost open
    // one is its parent, whose row is final.
    entries.sort_unstable();
    let words = rows.words;
    let mut out: Vec<(K, u8, u32)> = Vec::with_capacity(entries.len());
    let mut open: Vec<(K, u32)> = Vec::new();
    let mut row = vec![0u64; words];
    let mut i = 0;
    while i < entries.len() {
        let (addr, len, _) = entries[i];
        while open.last().is_some_and(|&(last, _)| last < addr) {
            open.pop();
        }
        let parent = open.last().map_or(EMPTY_ROW, |&(_, r)| r);
        row.copy_from_slice(rows.row(parent));

        while let Some(&(a, l, e)) = entries.get(i) {
            if (a, l) != (addr, len) {
                break;
            }
            i += 1;
            for (word, &mark) in row.iter_mut().zip(marks.of(e)) {
                // Each slot the entry lists is a nonzero pair of bits.
                let listed = (mark | mark >> 1) & 0x5555_5555_5555_5555;
                *word = *word & !(listed * 3) | mark;
            }
        }

        let id = rows.intern(&row);
        out.push((addr, len, id));
        open.push((addr.broadcast(len), id));
    }
    out
}

/// What each entry writes into a row: its answer in the two bits of every
/// slot it lists, zero elsewhere, `words` words an entry. Made in one pass
/// in file order, so that resolving in trie order reads these (8 bytes an
/// entry with up to 32 judged ports) instead of each entry and its port
/// list wherever the loader left them.
struct Marks {
    words: usize,
    marks: Vec<u64>,
}

impl Marks {
    fn new(rules: &Ruleset, words: usize) -> Marks {
        let mut marks = vec![0u64; rules.entries.len() * words];
        for (e, m) in rules.entries.iter().zip(marks.chunks_exact_mut(words)) {
            let answer = match e.kind {
                EntryKind::Permit => Answer::Permit,
                EntryKind::Block => Answer::Block,
            } as u64;
            for (slot, policy) in rules.ports.iter().enumerate() {
                if e.lists(policy.port, policy.proto) {
                    m[slot / 32] |= answer << (2 * (slot % 32));
                }
            }
        }
        Marks { words, marks }
    }

    fn of(&self, entry: usize) -> &[u64] {
        &self.marks[entry * self.words..(entry + 1) * self.words]
    }
}

/// A table but for its lookup structures.
struct Parts {
    slots: Box<[u16]>,
    policies: Vec<PortPolicy>,
    rows: RowSet,
}

impl Parts {
    fn resolve(rules: &Ruleset) -> (Parts, PrefixRows) {
        let mut slots = vec![0u16; 2 * 65536].into_boxed_slice();
        for (i, p) in rules.ports.iter().enumerate() {
            let slot = u16::try_from(i + 1).expect("loader caps judged ports below u16::MAX");
            slots[proto_index(p.proto) * 65536 + usize::from(p.port)] = slot;
        }
        let words = rules.ports.len().div_ceil(32).max(1);

        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (i, e) in rules.entries.iter().enumerate() {
            match e.prefix {
                IpNetwork::V4(n) => v4.push((u32::from(n.network_address()), n.netmask(), i)),
                IpNetwork::V6(n) => v6.push((u128::from(n.network_address()), n.netmask(), i)),
            }
        }
        let mut rows = RowSet::new(words);
        let marks = Marks::new(rules, words);
        let prefix_rows = PrefixRows {
            v4: resolve(&marks, v4, &mut rows),
            v6: resolve(&marks, v6, &mut rows),
        };
        let parts = Parts {
            slots,
            policies: rules.ports.clone(),
            rows,
        };
        (parts, prefix_rows)
    }

    fn build(self, v4: Vec<(u32, u8, u32)>, v6: Vec<(u128, u8, u32)>) -> Table {
        Table {
            slots: self.slots,
            policies: self.policies,
            words: self.rows.words,
            rows: self.rows.rows,
            v4: Lpm::build(v4, EMPTY_ROW),
            v6: Lpm::build(v6, EMPTY_ROW),
        }
    }
}

impl Table {
    pub fn compile(rules: &Ruleset) -> Table {
        let (parts, prefix_rows) = Parts::resolve(rules);
        parts.build(prefix_rows.v4, prefix_rows.v6)
    }

    /// [`Table::compile`], also returning the prefix -> row lists the
    /// lookup structures were built from.
    pub fn compile_with_prefix_rows(rules: &Ruleset) -> (Table, PrefixRows) {
        let (parts, prefix_rows) = Parts::resolve(rules);
        let table = parts.build(prefix_rows.v4.clone(), prefix_rows.v6.clone());
        (table, prefix_rows)
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

    /// The answer row of the longest prefix covering `addr`
    /// ([`EMPTY_ROW`] when none does).
    #[inline]
    pub fn row_of(&self, addr: Addr) -> u32 {
        match addr {
            Addr::V4(a) => self.v4.lookup(a),
            Addr::V6(a) => self.v6.lookup(a),
        }
    }

    /// The answer of `addr`'s deciding entry for a judged port.
    #[inline]
    pub fn answer(&self, addr: Addr, slot: Slot) -> Answer {
        self.row_answer(self.row_of(addr), slot)
    }

    /// The answer an answer row gives for a judged port.
    #[inline]
    pub fn row_answer(&self, row: u32, slot: Slot) -> Answer {
        match self.row_bits(row, slot) {
            0 => Answer::None,
            1 => Answer::Permit,
            _ => Answer::Block,
        }
    }

    /// [`Table::row_answer`] as the row holds it: the two bits of the
    /// [`Answer`]'s discriminant (3 does not occur), for a decision read
    /// from a table indexed by them.
    #[inline]
    pub fn row_bits(&self, row: u32, slot: Slot) -> usize {
        let word = self.rows[row as usize * self.words + usize::from(slot) / 32];
        ((word >> (2 * (slot % 32))) & 3) as usize
    }

    /// Prefixes stored, IPv4 and IPv6.
    pub fn len(&self) -> (usize, usize) {
        (self.v4.prefixes(), self.v6.prefixes())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    /// Distinct answer rows (row 0, "no entry", included).
    pub fn distinct_rows(&self) -> usize {
        self.rows.len() / self.words
    }

    /// The IPv4 and IPv6 lookup structures.
    pub fn lpm(&self) -> (&Lpm<u32>, &Lpm<u128>) {
        (&self.v4, &self.v6)
    }

    /// Bytes the table holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
            + self.policies.capacity() * std::mem::size_of::<PortPolicy>()
            + self.rows.capacity() * 8
            + self.v4.heap_bytes()
            + self.v6.heap_bytes()
    }
}
