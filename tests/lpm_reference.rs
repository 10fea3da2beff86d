//! Property: the compiled longest-prefix structure ([`portgate::lpm::Lpm`])
//! answers exactly like `ip_network_table`, the longest-prefix trie the
//! permit table used before, over random prefix sets (overlapping, repeated,
//! `/0`, hosts) and random addresses, for IPv4 and IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;
use proptest::prelude::*;

use portgate::lpm::{Key, Lpm};

const DEFAULT: u32 = portgate::lpm::MAX_VALUE;

/// An address family as both structures see it.
trait Family: Key + Arbitrary {
    fn net(self, len: u8) -> IpNetwork;
    fn reference(t: &IpNetworkTable<u32>, a: Self) -> Option<u32>;
    /// A small neighbourhood (a few high bits, a few low bits set at
    /// random) so that random prefixes overlap and nest often.
    fn near(hi: u8, lo: u8) -> Self;
    fn prev(self) -> Option<Self>;
}

impl Family for u32 {
    fn net(self, len: u8) -> IpNetwork {
        IpNetwork::new_truncate(IpAddr::V4(Ipv4Addr::from(self)), len).unwrap()
    }
    fn reference(t: &IpNetworkTable<u32>, a: Self) -> Option<u32> {
        t.longest_match_ipv4(Ipv4Addr::from(a)).map(|(_, v)| *v)
    }
    fn near(hi: u8, lo: u8) -> Self {
        0xc000_0200 | (u32::from(hi & 3) << 8) | (u32::from(hi >> 6) << 30) | u32::from(lo)
    }
    fn prev(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

impl Family for u128 {
    fn net(self, len: u8) -> IpNetwork {
        IpNetwork::new_truncate(IpAddr::V6(Ipv6Addr::from(self)), len).unwrap()
    }
    fn reference(t: &IpNetworkTable<u32>, a: Self) -> Option<u32> {
        t.longest_match_ipv6(Ipv6Addr::from(a)).map(|(_, v)| *v)
    }
    fn near(hi: u8, lo: u8) -> Self {
        (0x2001_0db8u128 << 96)
            | (u128::from(hi & 3) << 80)
            | (u128::from(hi >> 6) << 40)
            | u128::from(lo)
    }
    fn prev(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

fn addr<K: Family>() -> impl Strategy<Value = K> {
    prop_oneof![
        3 => (any::<u8>(), any::<u8>()).prop_map(|(h, l)| K::near(h, l)),
        1 => any::<K>(),
    ]
}

fn prefix<K: Family>() -> impl Strategy<Value = (K, u8, u32)> {
    let bits = K::BITS as u8;
    let len = prop_oneof![
        1 => Just(0u8),
        1 => Just(bits),
        6 => 0..=bits,
        // Lengths around the clustered neighbourhood's differing bits.
        4 => (bits - 12)..=bits,
    ];
    (addr::<K>(), len, 0u32..6)
}

/// Addresses to look up: random ones, and the first and last address of
/// each prefix and their outside neighbours, where ranges begin and end.
fn probes<K: Family>(prefixes: &[(K, u8, u32)], random: &[K]) -> Vec<K> {
    let mut out = random.to_vec();
    for &(a, len, _) in prefixes {
        let (first, last) = (a.network(len), a.broadcast(len));
        out.extend([first, last]);
        out.extend(first.prev());
        out.extend(last.next());
    }
    out
}

fn check<K: Family>(prefixes: Vec<(K, u8, u32)>, random: Vec<K>) -> Result<(), TestCaseError> {
    let mut reference = IpNetworkTable::new();
    for &(a, len, v) in &prefixes {
        reference.insert(a.net(len), v);
    }
    let lpm = Lpm::build(prefixes.clone(), DEFAULT);
    prop_assert!(lpm.ranges() <= 2 * prefixes.len() + 1);
    for a in probes(&prefixes, &random) {
        let want = K::reference(&reference, a).unwrap_or(DEFAULT);
        prop_assert_eq!(lpm.lookup(a), want, "address {:?}", a);
        // The same lookup in halves, as batches make it.
        let e = lpm.entry(a);
        lpm.warm(e);
        prop_assert_eq!(lpm.resolve(a, e), want, "address {:?} in halves", a);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2048),
        ..ProptestConfig::default()
    })]

    #[test]
    fn ipv4_answers_like_ip_network_table(
        prefixes in prop::collection::vec(prefix::<u32>(), 0..80),
        random in prop::collection::vec(addr::<u32>(), 0..64),
    ) {
        check(prefixes, random)?;
    }

    #[test]
    fn ipv6_answers_like_ip_network_table(
        prefixes in prop::collection::vec(prefix::<u128>(), 0..80),
        random in prop::collection::vec(addr::<u128>(), 0..64),
    ) {
        check(prefixes, random)?;
    }
}
