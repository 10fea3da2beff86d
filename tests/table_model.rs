//! Property: the compiled table decides exactly like the naive reference
//! model — scan every entry, the most specific covering entry that lists the
//! port wins, a permit of source or destination accepts — over random tables
//! of permits and blocks (IPv4 and IPv6, overlapping prefixes) and random
//! packets.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ip_network::IpNetwork;
use proptest::prelude::*;

use portgate::decision::{self, Accept, Decision, Drop, Unidentified};
use portgate::packet::Addr;
use portgate::rules::{Entry, EntryKind, Mode, PortPolicy, PortSel, Pos, Proto, Ruleset, Site};
use portgate::table::Table;

/// Judged ports of every random table: two enforce, one monitor, and one
/// port number judged for both protocols; between them 30 more that no
/// entry lists, so that 53's two slots (32 and 33) lie in the second word
/// of an answer row, which holds 32 answers a word.
fn policies() -> Vec<PortPolicy> {
    let p = |port, proto, mode| PortPolicy {
        port,
        proto,
        mode,
        pos: Pos::default(),
    };
    let mut ports = vec![
        p(25, Proto::Tcp, Mode::Enforce),
        p(587, Proto::Tcp, Mode::Monitor),
    ];
    ports.extend((2000..2030).map(|port| p(port, Proto::Tcp, Mode::Enforce)));
    ports.push(p(53, Proto::Udp, Mode::Enforce));
    ports.push(p(53, Proto::Tcp, Mode::Enforce));
    ports
}

/// Addresses are drawn from a small space so prefixes overlap often:
/// 192.0.2.0/24 plus a few bits above it, and 2001:db8::/32 with entropy in
/// the first and last bytes.
fn v4_addr() -> impl Strategy<Value = u32> {
    (0u32..4, any::<u8>()).prop_map(|(hi, lo)| 0xc000_0000 | (hi << 8) | u32::from(lo))
}

fn v6_addr() -> impl Strategy<Value = u128> {
    (0u128..4, 0u128..4, any::<u8>())
        .prop_map(|(a, b, lo)| (0x2001_0db8u128 << 96) | (a << 80) | (b << 40) | u128::from(lo))
}

fn prefix() -> impl Strategy<Value = IpNetwork> {
    prop_oneof![
        (v4_addr(), 0u8..=32).prop_map(|(a, len)| {
            IpNetwork::new_truncate(IpAddr::V4(Ipv4Addr::from(a)), len).unwrap()
        }),
        (v6_addr(), prop_oneof![Just(0u8), 24u8..=128]).prop_map(|(a, len)| {
            IpNetwork::new_truncate(IpAddr::V6(Ipv6Addr::from(a)), len).unwrap()
        }),
    ]
}

fn port_sel() -> impl Strategy<Value = PortSel> {
    prop_oneof![
        Just(PortSel {
            port: 25,
            proto: None
        }),
        Just(PortSel {
            port: 587,
            proto: None
        }),
        Just(PortSel {
            port: 53,
            proto: None
        }),
        Just(PortSel {
            port: 53,
            proto: Some(Proto::Udp)
        }),
        Just(PortSel {
            port: 53,
            proto: Some(Proto::Tcp)
        }),
        Just(PortSel {
            port: 80,
            proto: None
        }),
    ]
}

fn entry() -> impl Strategy<Value = (IpNetwork, Vec<PortSel>, bool)> {
    (
        prefix(),
        prop::collection::vec(port_sel(), 1..3),
        any::<bool>(),
    )
}

/// A ruleset the loader would accept: no (prefix, port, protocol) twice.
fn ruleset() -> impl Strategy<Value = Ruleset> {
    prop::collection::vec(entry(), 0..40).prop_map(|raw| {
        let mut taken = HashSet::new();
        let mut entries = Vec::new();
        for (prefix, sels, permit) in raw {
            let mut ports: Vec<PortSel> = Vec::new();
            for s in sels {
                let triples: Vec<_> = Proto::ALL
                    .into_iter()
                    .filter(|p| s.proto.is_none_or(|q| q == *p))
                    .map(|p| (prefix, s.port, p))
                    .collect();
                if triples.iter().all(|t| !taken.contains(t)) {
                    taken.extend(triples);
                    ports.push(s);
                }
            }
            if ports.is_empty() {
                continue;
            }
            entries.push(Entry {
                site: 0,
                kind: if permit {
                    EntryKind::Permit
                } else {
                    EntryKind::Block
                },
                prefix,
                ports,
                device: permit.then(|| "d".to_owned()),
                domain: None,
                reason: (!permit).then(|| "r".to_owned()),
                pos: Pos::default(),
            });
        }
        Ruleset {
            ports: policies(),
            sites: vec![Site {
                name: "S".into(),
                contacts: Default::default(),
                pos: Pos::default(),
            }],
            entries,
        }
    })
}

/// The reference: the rule as the issue states it, by scanning.
fn model(rules: &Ruleset, src: IpAddr, dst: IpAddr, port: u16, proto: Proto) -> Decision {
    let Some(policy) = rules.policy(port, proto) else {
        return Decision::Accept(Accept::Unjudged);
    };
    let s = rules.deciding_entry(src, port, proto).map(|e| e.kind);
    let d = rules.deciding_entry(dst, port, proto).map(|e| e.kind);
    if s == Some(EntryKind::Permit) {
        return Decision::Accept(Accept::SourcePermit);
    }
    if d == Some(EntryKind::Permit) {
        return Decision::Accept(Accept::DestinationPermit);
    }
    let why = if s == Some(EntryKind::Block) || d == Some(EntryKind::Block) {
        Unidentified::Blocked
    } else {
        Unidentified::NoEntry
    };
    match policy.mode {
        Mode::Enforce => Decision::Drop(Drop::Unidentified(why)),
        Mode::Monitor => Decision::Accept(Accept::Monitored(why)),
    }
}

fn packet(src: Addr, dst: Addr, port: u16, proto: Proto) -> Vec<u8> {
    use etherparse::PacketBuilder;
    let b = match (src, dst) {
        (Addr::V4(s), Addr::V4(d)) => PacketBuilder::ipv4(s.to_be_bytes(), d.to_be_bytes(), 64),
        (Addr::V6(s), Addr::V6(d)) => PacketBuilder::ipv6(s.to_be_bytes(), d.to_be_bytes(), 64),
        _ => unreachable!(),
    };
    let mut out = Vec::new();
    match proto {
        Proto::Tcp => b.tcp(1234, port, 1, 1).syn().write(&mut out, &[]).unwrap(),
        Proto::Udp => b.udp(1234, port).write(&mut out, &[]).unwrap(),
    }
    out
}

fn flow() -> impl Strategy<Value = (Addr, Addr, u16, Proto)> {
    let port = prop_oneof![Just(25u16), Just(587), Just(53), Just(80)];
    let proto = prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)];
    prop_oneof![
        (v4_addr(), v4_addr()).prop_map(|(s, d)| (Addr::V4(s), Addr::V4(d))),
        (v6_addr(), v6_addr()).prop_map(|(s, d)| (Addr::V6(s), Addr::V6(d))),
    ]
    .prop_flat_map(move |(s, d)| (Just(s), Just(d), port.clone(), proto.clone()))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(4096),
        ..ProptestConfig::default()
    })]

    #[test]
    fn compiled_table_decides_like_the_reference(
        rules in ruleset(),
        flows in prop::collection::vec(flow(), 1..64),
    ) {
        let table = Table::compile(&rules);
        for (src, dst, port, proto) in flows {
            let got = decision::decide(&table, &packet(src, dst, port, proto)).decision;
            let want = model(&rules, src.into(), dst.into(), port, proto);
            prop_assert_eq!(got, want, "{} -> {} port {}/{}", src, dst, port, proto);
        }
    }

    /// The worker decides a batch at once: every verdict as deciding each
    /// packet alone gives it, also for bytes cut short, a later fragment,
    /// and packets queued from the other family's hook.
    #[test]
    fn a_batch_decides_each_packet_as_alone(
        rules in ruleset(),
        flows in prop::collection::vec((flow(), 0u8..8), 1..100),
    ) {
        let table = Table::compile(&rules);
        let mut bytes = Vec::new();
        for ((src, dst, port, proto), how) in flows {
            let mut b = packet(src, dst, port, proto);
            let mut ethertype = if matches!(src, Addr::V4(_)) { 0x0800 } else { 0x86dd };
            match how {
                // Cut inside the transport header or the IP header.
                0 => b.truncate(b.len() - 19),
                1 => b.truncate(7),
                // From the other family's hook.
                2 => ethertype ^= 0x0800 ^ 0x86dd,
                // An IPv4 later fragment (offset 8 bytes).
                3 if ethertype == 0x0800 => b[7] = 1,
                _ => {}
            }
            bytes.push((b, ethertype));
        }
        let queued: Vec<_> = bytes
            .iter()
            .map(|(b, ethertype)| decision::Queued { bytes: b, ethertype: *ethertype })
            .collect();
        let mut out = vec![decision::UNDECIDED; queued.len()];
        decision::decide_batch(&table, &queued, &mut out);
        for (q, got) in queued.iter().zip(&out) {
            let want = decision::decide_queued(&table, q.bytes, q.ethertype);
            prop_assert_eq!(*got, want, "{:?}", q);
        }
    }
}
