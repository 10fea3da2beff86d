//! A compiled, immutable longest-prefix-match structure for one address
//! family: IPv4 (`u32` keys) or IPv6 (`u128` keys), prefix -> `u32` value.
//!
//! Contract: [`Lpm::build`] takes a list of prefixes with their values and
//! a default for addresses no prefix covers; [`Lpm::lookup`] returns the
//! value of the longest prefix covering an address, exactly as a
//! longest-prefix trie would (`ip_network_table` is the reference the tests
//! hold it to). Lookups neither allocate nor branch on anything but the
//! address; the structure is never modified after it is built.
//!
//! # Layout: ranges behind a direct index (DXR-like)
//!
//! A set of prefixes cuts the address space into disjoint ranges, each
//! carrying the value of the longest prefix that covers it. Nested prefixes
//! add at most two range starts each (their first address, and the address
//! after their last), and neighbouring ranges with equal values merge, so
//! there are at most `2n + 1` ranges for `n` prefixes whatever the key width
//! or prefix lengths. Memory is 8 bytes per range for IPv4 and 20 for IPv6,
//! plus 4 to 8 bytes per range for the index.
//!
//! Finding an address's range is a search for the last start at or below
//! it. A direct index of `2^d` chunks narrows the search to one chunk. An
//! index entry (32 bits) holds either the chunk's value, when no range
//! starts inside the chunk, or the position of the range covering the
//! chunk's first address and a power-of-two bound on the ranges starting
//! inside it. A lookup is therefore one index read, and for chunks where
//! ranges start, one binary search over a few neighbouring ranges, each a
//! packed start and value (8 bytes for IPv4, 20 for IPv6), so the search
//! and the value it finds share cache lines. `d` grows with the number of
//! ranges (one to two chunks per range, at most [`MAX_INDEX_BITS`]).
//! The index spans only the block of addresses where the starts lie (for
//! IPv6, typically a few `/32`s of `2000::/3`), so clustered tables still
//! spread over all chunks; addresses outside that block lie in the first or
//! the last range.
//!
//! This is the "D" + "R" of DXR (Zec, Rizzo, Mikuc, 2012), for both key
//! widths. A Poptrie-like multibit trie (6-bit strides) was the
//! alternative, not built: it walks up to 19 dependent levels for a deep
//! IPv6 prefix, and without path compression its memory grows with prefix
//! length, where ranges stay at two per prefix whatever the length.

use std::fmt::Debug;
use std::hint::select_unpredictable;

/// The widest direct index: 2^22 chunks, 16 MiB.
pub const MAX_INDEX_BITS: u32 = 22;

/// An address as a fixed-width unsigned integer, most significant bit first.
pub trait Key: Copy + Ord + Debug + Send + Sync + 'static {
    const BITS: u32;
    const ZERO: Self;
    /// The first address of the prefix `self/len` (host bits cleared).
    fn network(self, len: u8) -> Self;
    /// The last address of the prefix `self/len` (host bits set).
    fn broadcast(self, len: u8) -> Self;
    /// `self + 1`, or `None` past the last address.
    fn next(self) -> Option<Self>;
    /// Number of leading bits `self` and `other` share.
    fn common_bits(self, other: Self) -> u32;
    /// `base + (i << shift)`.
    fn offset(base: Self, i: usize, shift: u32) -> Self;
    /// `(self - base) >> shift` when `self >= base` and the result is below
    /// `chunks`; `None` otherwise.
    fn chunk(self, base: Self, shift: u32, chunks: usize) -> Option<usize>;
}

macro_rules! impl_key {
    ($t:ty) => {
        impl Key for $t {
            const BITS: u32 = <$t>::BITS;
            const ZERO: Self = 0;

            #[inline]
            fn network(self, len: u8) -> Self {
                match <$t>::MAX.checked_shl(Self::BITS - u32::from(len)) {
                    Some(mask) => self & mask,
                    None => 0,
                }
            }

            #[inline]
            fn broadcast(self, len: u8) -> Self {
                let host = <$t>::MAX.checked_shr(u32::from(len)).unwrap_or(0);
                self | host
            }

            #[inline]
            fn next(self) -> Option<Self> {
                self.checked_add(1)
            }

            #[inline]
            fn common_bits(self, other: Self) -> u32 {
                (self ^ other).leading_zeros()
            }

            #[inline]
            fn offset(base: Self, i: usize, shift: u32) -> Self {
                base + ((i as $t) << shift)
            }

            #[inline]
            fn chunk(self, base: Self, shift: u32, chunks: usize) -> Option<usize> {
                // `self < base` wraps to a huge offset and fails the bound.
                let i = self.wrapping_sub(base) >> shift;
                if i < chunks as $t {
                    Some(i as usize)
                } else {
                    None
                }
            }
        }
    };
}

impl_key!(u32);
impl_key!(u128);

/// One range: its first address and its value, packed so that an IPv6
/// range takes 20 bytes and an IPv4 one 8, and the binary search and the
/// value it finds share cache lines.
#[derive(Clone, Copy, Debug)]
#[repr(C, packed(4))]
struct Range<K> {
    start: K,
    value: u32,
}

/// Index entry flag: no range starts inside the chunk; the rest of the
/// entry is the chunk's value.
const SOLID: u32 = 1 << 31;
/// Otherwise the entry is `class << P_BITS | p`: `ranges[p]` covers the
/// chunk's first address and fewer than `2^class` ranges start inside it.
const P_BITS: u32 = 26;
/// The widest class: the search runs to the end of the ranges.
const LAST_CLASS: u32 = (SOLID >> P_BITS) - 1;
const P_MASK: u32 = (1 << P_BITS) - 1;

/// Chunks where fewer than `WINDOW` ranges start (nearly all of them) are
/// searched in `WINDOW_CLASS` fixed, branch-free steps; the rest in a
/// binary search of their own.
const WINDOW_CLASS: u32 = 4;
const WINDOW: usize = 1 << WINDOW_CLASS;

/// The index entry of an address's chunk: what [`Lpm::entry`] reads and
/// [`Lpm::resolve`] finishes the lookup from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry(u32);

/// Values must stay below this: the top bit of an index entry is a flag.
pub const MAX_VALUE: u32 = SOLID - 1;
/// Ranges per family the 26-bit positions reach (some 33 million prefixes).
pub const MAX_RANGES: usize = 1 << P_BITS;

/// Longest-prefix match over one address family. Immutable once built.
#[derive(Clone, Debug)]
pub struct Lpm<K: Key> {
    /// First address the index covers.
    base: K,
    /// Chunk of an address: `(addr - base) >> shift`.
    shift: u32,
    /// One entry per chunk: [`SOLID`] and the chunk's value, or the
    /// position of the range covering the chunk's first address and a bound
    /// on the ranges starting inside it (see [`P_BITS`]).
    index: Box<[u32]>,
    /// The ranges, by ascending start; `ranges[0]` starts at address zero.
    /// After the `len` ranges, `WINDOW - 1` copies of the last one, so that
    /// a fixed-step search never runs off the end.
    ranges: Box<[Range<K>]>,
    len: usize,
    prefixes: usize,
}

impl<K: Key> Lpm<K> {
    /// Builds the structure from `(address, length, value)` triples.
    /// Host bits past `length` are ignored; lengths above the key width
    /// are treated as the full width. If a prefix is listed twice, the
    /// later one in the list wins. Addresses no prefix covers get
    /// `default`.
    ///
    /// # Panics
    ///
    /// On a value above [`MAX_VALUE`], or when the prefixes cut the space
    /// into more than [`MAX_RANGES`] ranges.
    pub fn build(mut prefixes: Vec<(K, u8, u32)>, default: u32) -> Lpm<K> {
        assert!(default <= MAX_VALUE, "values stay below 2^31");
        let full = u8::try_from(K::BITS).expect("key widths fit in u8");
        for p in &mut prefixes {
            assert!(p.2 <= MAX_VALUE, "values stay below 2^31");
            p.1 = p.1.min(full);
            p.0 = p.0.network(p.1);
        }
        // Trie order: a prefix comes after every prefix that covers it. The
        // sort is stable so that a repeated prefix keeps its list order.
        prefixes.sort_by_key(|&(a, len, _)| (a, len));
        let count = prefixes.len();

        let mut ranges = Ranges::default();
        ranges.push(K::ZERO, default);
        // The prefixes open at the current position: (last address, value),
        // innermost last.
        let mut open: Vec<(K, u32)> = Vec::new();
        for (addr, len, value) in prefixes {
            close_before(&mut open, &mut ranges, Some(addr), default);
            ranges.push(addr, value);
            open.push((addr.broadcast(len), value));
        }
        close_before(&mut open, &mut ranges, None, default);

        Self::index(ranges.0, count)
    }

    fn index(mut ranges: Vec<Range<K>>, prefixes: usize) -> Lpm<K> {
        let n = ranges.len();
        assert!(
            n <= MAX_RANGES,
            "{n} ranges: at most {MAX_RANGES} per address family"
        );
        // The starts after the first (address zero) all lie in the block of
        // the longest prefix that the first and the last of them share.
        let (base, span) = match (ranges.get(1), ranges.last()) {
            (Some(lo), Some(hi)) => {
                let (lo, hi) = (lo.start, hi.start);
                let shared = lo.common_bits(hi);
                (lo.network(shared as u8), K::BITS - shared)
            }
            _ => (K::ZERO, 0),
        };
        // One to two chunks per range: the smallest power of two above the
        // range starts. Half that (up to one range per chunk) made the
        // index half as big but left fewer chunks solid, so that more
        // lookups read ranges as well: with 100k permits of the realistic
        // mix, 33.9-36.4 ns a packet through `decide_batch` against
        // 32.4-33.4 (interleaved runs of the two bench builds).
        let bits = if n <= 1 {
            0
        } else {
            (usize::BITS - (n - 1).leading_zeros())
                .clamp(1, MAX_INDEX_BITS)
                .min(span)
        };
        let shift = span - bits;
        let chunks = if n <= 1 { 0 } else { 1usize << bits };

        let mut index = Vec::with_capacity(chunks);
        let mut p = 0usize;
        for i in 0..chunks {
            let first = K::offset(base, i, shift);
            while p + 1 < n && { ranges[p + 1].start } <= first {
                p += 1;
            }
            // The ranges starting inside this chunk: up to the next chunk's
            // first address (or the end of the block).
            let mut q = p;
            let next = (i + 1 < chunks).then(|| K::offset(base, i + 1, shift));
            while q + 1 < n && next.is_none_or(|next| { ranges[q + 1].start } < next) {
                q += 1;
            }
            index.push(if q == p {
                SOLID | ranges[p].value
            } else {
                let class = (usize::BITS - (q - p).leading_zeros()).min(LAST_CLASS);
                class << P_BITS | p as u32
            });
        }

        let last = ranges[n - 1];
        ranges.extend(std::iter::repeat_n(last, WINDOW - 1));
        Lpm {
            base,
            shift,
            index: index.into_boxed_slice(),
            ranges: ranges.into_boxed_slice(),
            len: n,
            prefixes,
        }
    }

    /// The value of the longest prefix covering `addr`, or the default.
    ///
    /// For one address at a time. Its branches are predicted, so the
    /// processor runs on past its reads into the work after it; for many
    /// addresses at once, [`Lpm::entry`], [`Lpm::warm`] and
    /// [`Lpm::resolve`] in passes over all of them are faster.
    #[inline]
    pub fn lookup(&self, addr: K) -> u32 {
        let e = self.entry(addr).0;
        if e & SOLID != 0 {
            return e & !SOLID;
        }
        self.search(addr, e)
    }

    /// The first half of [`Lpm::lookup`]: the index entry of `addr`'s
    /// chunk, one memory read. Reading the entries of many addresses before
    /// resolving any lets their cache misses overlap (see
    /// [`crate::decision::decide_batch`]).
    #[inline]
    pub fn entry(&self, addr: K) -> Entry {
        Entry(match addr.chunk(self.base, self.shift, self.index.len()) {
            Some(i) => self.index[i],
            // Below the block: before the first range start after zero.
            None if addr < self.base => SOLID | self.ranges[0].value,
            None => SOLID | self.ranges[self.len - 1].value,
        })
    }

    /// The second half of [`Lpm::lookup`]: the value for `addr`, given the
    /// [`Lpm::entry`] of its chunk.
    ///
    /// Nothing here branches on what the table holds, except for the rare
    /// chunk where 16 or more ranges start: a mispredicted branch
    /// would throw away the work on the packets after this one, and with it
    /// the overlap of their cache misses. A solid chunk's value is chosen
    /// with a mask, and its search reads, unused, the first range (always
    /// cached).
    #[inline]
    pub fn resolve(&self, addr: K, entry: Entry) -> u32 {
        let e = entry.0;
        let solid = e & SOLID != 0;
        let class = (e >> P_BITS) & LAST_CLASS;
        if !solid & (class > WINDOW_CLASS) {
            return self.search_cold(addr, e);
        }
        // ranges[p] covers the chunk's first address and fewer than
        // 2^class ranges start inside the chunk: the one we want is the
        // last of ranges[p..p + 2^class] that starts at or below addr. The
        // search takes WINDOW_CLASS steps whatever the class, so its loop
        // never mispredicts: the steps a narrower class does not need are
        // steps of zero, which read an entry already read (no cache line
        // beyond the class's is touched). Ranges past the chunk's end start
        // above addr, and the padding after the last range repeats it, so
        // no step runs off the end. A solid chunk searches ranges[0..1].
        let live = usize::from(solid).wrapping_sub(1);
        let p = (e & P_MASK) as usize & live;
        // The window the steps can reach (the padding keeps it inside the
        // ranges), checked once: positions in it need no check of their own.
        let window: &[Range<K>; WINDOW] = self.ranges[p..p + WINDOW]
            .try_into()
            .expect("a window is WINDOW ranges");
        let mut b = 0;
        let mut step = ((1usize << class) >> 1) & live;
        for _ in 0..WINDOW_CLASS {
            let start = window[(b + step) % WINDOW].start;
            // Unpredictable: a conditional move, which the compiler would
            // otherwise turn into a branch on the loaded start.
            b = select_unpredictable(start <= addr, b + step, b);
            step >>= 1;
        }
        select_unpredictable(solid, e & !SOLID, window[b % WINDOW].value)
    }

    /// Reads the first range [`Lpm::resolve`] will search for `entry`, and
    /// returns its value so that the read is not optimised away. Called on
    /// many entries before any is resolved, it brings their cache lines in
    /// together: a software prefetch, in safe code. The first range is
    /// enough: most chunks hold one to three ranges, in one cache line, and
    /// reading the last of the window as well cost more instructions than
    /// the misses it saved (see `decide_batch`).
    #[inline]
    pub fn warm(&self, entry: Entry) -> u32 {
        let e = entry.0;
        // A solid entry holds a value, not a position: it reads ranges[0].
        let live = usize::from(e & SOLID == 0).wrapping_neg();
        self.ranges[(e & P_MASK) as usize & live].value
    }

    /// [`Lpm::search`], out of the way of [`Lpm::resolve`]'s straight line.
    #[cold]
    #[inline(never)]
    fn search_cold(&self, addr: K, e: u32) -> u32 {
        self.search(addr, e)
    }

    /// The search of a chunk where ranges start: a binary search over the
    /// `2^class` ranges from `p` (to the end for the widest class). Searching
    /// past the chunk's end is harmless (those start above addr).
    #[inline]
    fn search(&self, addr: K, e: u32) -> u32 {
        let (class, p) = (e >> P_BITS, (e & P_MASK) as usize);
        let end = if class == LAST_CLASS {
            self.len
        } else {
            self.len.min(p + (1 << class))
        };
        let inside = &self.ranges[p..end];
        let k = inside[1..].partition_point(|r| {
            let start = r.start;
            start <= addr
        });
        inside[k].value
    }

    /// Prefixes it was built from (repeated ones counted each time).
    pub fn prefixes(&self) -> usize {
        self.prefixes
    }

    /// Disjoint ranges the prefixes cut the address space into.
    pub fn ranges(&self) -> usize {
        self.len
    }

    /// Width of the direct index in bits.
    pub fn index_bits(&self) -> u32 {
        match self.index.len() {
            0 => 0,
            chunks => chunks.trailing_zeros(),
        }
    }

    /// Bytes on the heap.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.index) + std::mem::size_of_val(&*self.ranges)
    }
}

/// Ranges under construction.
struct Ranges<K>(Vec<Range<K>>);

impl<K> Default for Ranges<K> {
    fn default() -> Self {
        Ranges(Vec::new())
    }
}

impl<K: Key> Ranges<K> {
    /// Starts a range with `value` at `start`. A range already starting
    /// there is replaced (a more specific prefix starts at the same
    /// address), and a range with the same value as the one before it is
    /// not started at all (it extends that one).
    fn push(&mut self, start: K, value: u32) {
        if self.0.last().is_some_and(|r| { r.start } == start) {
            self.0.pop();
        }
        if self.0.last().is_none_or(|r| r.value != value) {
            self.0.push(Range { start, value });
        }
    }
}

/// Closes the open prefixes that end before `next` (all of them for
/// `None`): after each, the range continues with the value of the prefix
/// around it.
fn close_before<K: Key>(
    open: &mut Vec<(K, u32)>,
    ranges: &mut Ranges<K>,
    next: Option<K>,
    default: u32,
) {
    while let Some(&(last, _)) = open.last() {
        if next.is_some_and(|n| last >= n) {
            break;
        }
        open.pop();
        if let Some(after) = last.next() {
            ranges.push(after, open.last().map_or(default, |&(_, v)| v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> u32 {
        s.parse::<std::net::Ipv4Addr>().unwrap().into()
    }

    fn v6(s: &str) -> u128 {
        s.parse::<std::net::Ipv6Addr>().unwrap().into()
    }

    #[test]
    fn empty_table_answers_the_default() {
        let t = Lpm::<u32>::build(vec![], 7);
        assert_eq!(t.ranges(), 1);
        for a in [0, 1, v4("192.0.2.1"), u32::MAX] {
            assert_eq!(t.lookup(a), 7);
        }
    }

    #[test]
    fn nested_prefixes() {
        let t = Lpm::build(
            vec![
                (v4("192.0.2.130"), 32, 3),
                (v4("192.0.2.0"), 24, 1),
                (v4("192.0.2.128"), 29, 2),
            ],
            0,
        );
        assert_eq!(t.lookup(v4("192.0.1.255")), 0);
        assert_eq!(t.lookup(v4("192.0.2.0")), 1);
        assert_eq!(t.lookup(v4("192.0.2.127")), 1);
        assert_eq!(t.lookup(v4("192.0.2.128")), 2);
        assert_eq!(t.lookup(v4("192.0.2.129")), 2);
        assert_eq!(t.lookup(v4("192.0.2.130")), 3);
        assert_eq!(t.lookup(v4("192.0.2.131")), 2);
        assert_eq!(t.lookup(v4("192.0.2.136")), 1);
        assert_eq!(t.lookup(v4("192.0.2.255")), 1);
        assert_eq!(t.lookup(v4("192.0.3.0")), 0);
    }

    #[test]
    fn edges_of_the_address_space() {
        let t = Lpm::build(
            vec![
                (0, 0, 1),
                (0, 32, 2),
                (u32::MAX, 32, 3),
                (0x8000_0000, 1, 4),
            ],
            0,
        );
        assert_eq!(t.lookup(0), 2);
        assert_eq!(t.lookup(1), 1);
        assert_eq!(t.lookup(0x7fff_ffff), 1);
        assert_eq!(t.lookup(0x8000_0000), 4);
        assert_eq!(t.lookup(u32::MAX - 1), 4);
        assert_eq!(t.lookup(u32::MAX), 3);

        let t = Lpm::build(vec![(u128::MAX, 128, 9), (v6("2001:db8::"), 32, 5)], 0);
        assert_eq!(t.lookup(u128::MAX), 9);
        assert_eq!(t.lookup(u128::MAX - 1), 0);
        assert_eq!(t.lookup(v6("2001:db8:ffff::1")), 5);
        assert_eq!(t.lookup(v6("2001:db9::")), 0);
        assert_eq!(t.lookup(0), 0);
    }

    #[test]
    fn one_host() {
        let t = Lpm::build(vec![(v6("2001:db8::1"), 128, 1)], 0);
        assert_eq!(t.lookup(v6("2001:db8::")), 0);
        assert_eq!(t.lookup(v6("2001:db8::1")), 1);
        assert_eq!(t.lookup(v6("2001:db8::2")), 0);
    }

    #[test]
    fn host_bits_are_ignored_and_later_repeats_win() {
        let t = Lpm::build(vec![(v4("192.0.2.77"), 24, 1), (v4("192.0.2.0"), 24, 2)], 0);
        assert_eq!(t.prefixes(), 2);
        assert_eq!(t.lookup(v4("192.0.2.1")), 2);
    }

    #[test]
    fn equal_neighbours_merge() {
        // Two halves of a /24 with the /24's own value: one range.
        let t = Lpm::build(
            vec![
                (v4("192.0.2.0"), 24, 1),
                (v4("192.0.2.0"), 25, 1),
                (v4("192.0.2.128"), 25, 1),
            ],
            0,
        );
        assert_eq!(t.ranges(), 3);
    }

    #[test]
    fn a_crowded_chunk_is_searched_whole() {
        // 40000 hosts, every other address, in 80000 addresses: the two
        // chunks they fall in hold some 40000 range starts each.
        let mut prefixes: Vec<_> = (0..40_000u32)
            .map(|i| (v4("192.0.0.0") + 2 * i, 32, 1 + i % 2))
            .collect();
        prefixes.extend([(v4("1.0.0.0"), 8, 5), (v4("254.0.0.0"), 8, 6)]);
        let t = Lpm::build(prefixes, 0);
        let halves = |a| t.resolve(a, t.entry(a));
        for i in 0..40_000u32 {
            let a = v4("192.0.0.0") + 2 * i;
            assert_eq!(t.lookup(a), 1 + i % 2);
            assert_eq!(t.lookup(a + 1), 0);
            assert_eq!(halves(a), 1 + i % 2);
            assert_eq!(halves(a + 1), 0);
        }
        assert_eq!(t.lookup(v4("1.2.3.4")), 5);
        assert_eq!(t.lookup(v4("254.2.3.4")), 6);
    }

    #[test]
    fn halves_agree_with_lookup_for_every_crowding() {
        // Chunks where 1, 2, ... 40 ranges start: every class, inside the
        // branch-free window and past it, for both key widths.
        for crowd in 1..=40u32 {
            let mut v4s: Vec<_> = (0..crowd)
                .map(|i| (v4("198.51.100.0") + 3 * i, 32, 1 + i % 3))
                .collect();
            v4s.push((v4("203.0.113.0"), 24, 9));
            let t = Lpm::build(v4s, 0);
            let v6s: Vec<_> = (0..crowd)
                .map(|i| (v6("2001:db8::") + 3 * u128::from(i), 128, 1 + i % 3))
                .collect();
            let t6 = Lpm::build(v6s, 0);
            for a in v4("198.51.99.250")..v4("198.51.100.200") {
                assert_eq!(t.resolve(a, t.entry(a)), t.lookup(a), "{crowd}: {a:#x}");
                let a6 = v6("2001:db8::") + u128::from(a) - u128::from(v4("198.51.99.250"));
                assert_eq!(
                    t6.resolve(a6, t6.entry(a6)),
                    t6.lookup(a6),
                    "{crowd}: {a6:#x}"
                );
            }
            for a in [0, v4("203.0.113.7"), u32::MAX] {
                assert_eq!(t.resolve(a, t.entry(a)), t.lookup(a));
            }
        }
    }

    #[test]
    fn clustered_ipv6_spreads_over_the_index() {
        let prefixes: Vec<_> = (0..1000u128)
            .map(|i| (v6("2001:db8::") | (i << 64), 64, 1 + (i % 3) as u32))
            .collect();
        let t = Lpm::build(prefixes, 0);
        assert!(t.index_bits() >= 9, "{}", t.index_bits());
        for i in 0..1000u128 {
            let a = v6("2001:db8::") | (i << 64) | 0x1234;
            assert_eq!(t.lookup(a), 1 + (i % 3) as u32);
        }
        assert_eq!(t.lookup(v6("2001:db8:0:1000::")), 0);
    }
}
