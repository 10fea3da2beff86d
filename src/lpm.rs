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
//! or prefix lengths: memory is linear, 8 bytes per range start for IPv4 and
//! 20 for IPv6.
//!
//! Finding an address's range is a search for the last start at or below
//! it. A direct index of `2^d` chunks narrows the search to one chunk: chunk
//! `i` stores the position of the range covering its first address, and the
//! next chunk's entry bounds the search, so a lookup is one index read (two
//! neighbouring `u32`s), a binary search over the few starts inside the
//! chunk (usually none or one), and one value read. `d` grows with the
//! number of starts (about one per chunk, at most [`MAX_INDEX_BITS`]).
//! The index spans only the block of addresses where the starts lie (for
//! IPv6, typically a few `/32`s of `2000::/3`), so clustered tables still
//! spread over all chunks; addresses outside that block lie in the first or
//! the last range.
//!
//! This is the "D" + "R" of DXR (Zec, Rizzo, Mikuc, 2012), for both key
//! widths. A Poptrie-like multibit trie was the alternative: equally fast
//! for IPv4, but it walks up to 19 levels for a deep IPv6 prefix and its
//! memory grows with prefix length, where ranges stay at two starts per
//! prefix.

use std::fmt::Debug;

/// The widest direct index: 2^22 chunks, 16 MiB of `u32`.
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

/// Longest-prefix match over one address family. Immutable once built.
#[derive(Clone, Debug)]
pub struct Lpm<K: Key> {
    /// First address the index covers.
    base: K,
    /// Chunk of an address: `(addr - base) >> shift`.
    shift: u32,
    /// `chunks + 1` entries: `index[i]` is the position of the range that
    /// covers chunk `i`'s first address; `index[chunks]` the last range.
    index: Box<[u32]>,
    /// Range starts, ascending; `starts[0]` is address zero.
    starts: Box<[K]>,
    /// `values[p]` belongs to the range starting at `starts[p]`.
    values: Box<[u32]>,
    prefixes: usize,
}

impl<K: Key> Lpm<K> {
    /// Builds the structure from `(address, length, value)` triples.
    /// Host bits past `length` are ignored; lengths above the key width
    /// are treated as the full width. If a prefix is listed twice, the
    /// later one in the list wins. Addresses no prefix covers get
    /// `default`.
    pub fn build(mut prefixes: Vec<(K, u8, u32)>, default: u32) -> Lpm<K> {
        let full = u8::try_from(K::BITS).expect("key widths fit in u8");
        for p in &mut prefixes {
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

        Self::index(ranges, count)
    }

    fn index(ranges: Ranges<K>, prefixes: usize) -> Lpm<K> {
        let Ranges { starts, values } = ranges;
        let n = starts.len();
        assert!(
            u32::try_from(n).is_ok(),
            "fewer than 2^32 ranges: the loader caps the file far below"
        );
        // The starts after the first (address zero) all lie in the block of
        // the longest prefix that the first and the last of them share.
        let (base, span) = match (starts.get(1), starts.last()) {
            (Some(&lo), Some(&hi)) => {
                let shared = lo.common_bits(hi);
                (lo.network(shared as u8), K::BITS - shared)
            }
            _ => (K::ZERO, 0),
        };
        let bits = if n <= 1 {
            0
        } else {
            (n - 1)
                .next_power_of_two()
                .trailing_zeros()
                .clamp(1, MAX_INDEX_BITS)
                .min(span)
        };
        let shift = span - bits;
        let chunks = if n <= 1 { 0 } else { 1usize << bits };

        let mut index = Vec::with_capacity(chunks + 1);
        let mut p = 0usize;
        for i in 0..chunks {
            let first = K::offset(base, i, shift);
            while p + 1 < n && starts[p + 1] <= first {
                p += 1;
            }
            index.push(p as u32);
        }
        index.push((n - 1) as u32);

        Lpm {
            base,
            shift,
            index: index.into_boxed_slice(),
            starts: starts.into_boxed_slice(),
            values: values.into_boxed_slice(),
            prefixes,
        }
    }

    /// The value of the longest prefix covering `addr`, or the default.
    #[inline]
    pub fn lookup(&self, addr: K) -> u32 {
        let chunks = self.index.len() - 1;
        let p = match addr.chunk(self.base, self.shift, chunks) {
            Some(i) => {
                let (lo, hi) = (self.index[i] as usize, self.index[i + 1] as usize);
                // starts[lo] <= the chunk's first address <= addr; the range
                // we want is the last one in lo..=hi starting at or below addr.
                lo + self.starts[lo + 1..=hi].partition_point(|&s| s <= addr)
            }
            // Below the block: before the first range start after zero.
            None if addr < self.base => 0,
            None => self.values.len() - 1,
        };
        self.values[p]
    }

    /// Prefixes it was built from (repeated ones counted each time).
    pub fn prefixes(&self) -> usize {
        self.prefixes
    }

    /// Disjoint ranges the prefixes cut the address space into.
    pub fn ranges(&self) -> usize {
        self.starts.len()
    }

    /// Width of the direct index in bits.
    pub fn index_bits(&self) -> u32 {
        (self.index.len() - 1).trailing_zeros()
    }

    /// Bytes on the heap.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.index)
            + std::mem::size_of_val(&*self.starts)
            + std::mem::size_of_val(&*self.values)
    }
}

/// Range starts and values under construction.
struct Ranges<K> {
    starts: Vec<K>,
    values: Vec<u32>,
}

impl<K> Default for Ranges<K> {
    fn default() -> Self {
        Ranges {
            starts: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<K: Key> Ranges<K> {
    /// Starts a range with `value` at `start`. A range already starting
    /// there is replaced (a more specific prefix starts at the same
    /// address), and a range with the same value as the one before it is
    /// not started at all (it extends that one).
    fn push(&mut self, start: K, value: u32) {
        if self.starts.last() == Some(&start) {
            self.starts.pop();
            self.values.pop();
        }
        if self.values.last() != Some(&value) {
            self.starts.push(start);
            self.values.push(value);
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
    fn clustered_ipv6_spreads_over_the_index() {
        let prefixes: Vec<_> = (0..1000u128)
            .map(|i| (v6("2001:db8::") | (i << 64), 64, 1 + (i % 3) as u32))
            .collect();
        let t = Lpm::build(prefixes, 0);
        assert!(t.index_bits() >= 10, "{}", t.index_bits());
        for i in 0..1000u128 {
            let a = v6("2001:db8::") | (i << 64) | 0x1234;
            assert_eq!(t.lookup(a), 1 + (i % 3) as u32);
        }
        assert_eq!(t.lookup(v6("2001:db8:0:1000::")), 0);
    }
}
