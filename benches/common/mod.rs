//! Deterministic permit tables, packets and reference structures for the
//! benchmarks and `examples/build_table.rs`. Nothing is downloaded: every
//! table comes from a seeded generator.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::PacketBuilder;
use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;

use portgate::decision::{self, Accept, Decision, Unidentified};
use portgate::packet::{self, Addr};
use portgate::rules::{
    Contact, Contacts, Entry, EntryKind, Mode, PortPolicy, PortSel, Pos, Proto, Ruleset, Site,
};
use portgate::table::{Answer, PrefixRows, Table};

/// splitmix64: small, fast, and the same numbers on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    pub fn u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.range(0, 99) < percent
    }
}

/// The kinds of permit table the benchmarks use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// Customer sites: each a random /24 with one to three /32 hosts in it
    /// and, for half of them, a /24–/29 range. About 80% hosts.
    V4Realistic,
    /// Lengths uniform /8–/32 at random addresses (a prefix drawn twice is
    /// drawn again, so short lengths run out at 1M and the mix shifts a
    /// little towards longer ones).
    V4Harsh,
    /// Lengths uniform /32–/128 at random addresses in 2000::/3.
    V6,
}

impl Mix {
    pub fn name(self) -> &'static str {
        match self {
            Mix::V4Realistic => "v4-realistic",
            Mix::V4Harsh => "v4-harsh",
            Mix::V6 => "v6",
        }
    }

    pub fn parse(s: &str) -> Option<Mix> {
        [Mix::V4Realistic, Mix::V4Harsh, Mix::V6]
            .into_iter()
            .find(|m| m.name() == s)
    }

    /// `n` distinct prefixes of this mix.
    pub fn prefixes(self, n: usize, seed: u64) -> Vec<IpNetwork> {
        let mut rng = Rng::new(seed);
        let mut seen = HashSet::with_capacity(n);
        let mut out = Vec::with_capacity(n);
        let mut add = |p: IpNetwork, out: &mut Vec<IpNetwork>| {
            if out.len() < n && seen.insert(p) {
                out.push(p);
            }
        };
        while out.len() < n {
            match self {
                Mix::V4Realistic => {
                    let site = rng.u32() & !0xff;
                    if rng.chance(50) {
                        let len = rng.range(24, 29) as u8;
                        add(v4(site | (rng.u32() & 0xff), len), &mut out);
                    }
                    for _ in 0..rng.range(1, 3) {
                        add(v4(site | (rng.u32() & 0xff), 32), &mut out);
                    }
                }
                Mix::V4Harsh => {
                    let len = rng.range(8, 32) as u8;
                    add(v4(rng.u32(), len), &mut out);
                }
                Mix::V6 => {
                    let len = rng.range(32, 128) as u8;
                    let a = (rng.u128() >> 3) | (1u128 << 125);
                    add(v6(a, len), &mut out);
                }
            }
        }
        out
    }
}

pub fn v4(a: u32, len: u8) -> IpNetwork {
    IpNetwork::new_truncate(IpAddr::V4(Ipv4Addr::from(a)), len).unwrap()
}

pub fn v6(a: u128, len: u8) -> IpNetwork {
    IpNetwork::new_truncate(IpAddr::V6(Ipv6Addr::from(a)), len).unwrap()
}

/// The judged ports of every generated table.
pub const PORTS: [u16; 3] = [25, 465, 587];

/// A ruleset over `prefixes`: 90% permits, 10% blocks, each listing a random
/// non-empty subset of [`PORTS`] (so that answer rows differ and nested
/// prefixes do not all collapse into one answer). One site per ten entries.
pub fn ruleset(prefixes: &[IpNetwork], seed: u64) -> Ruleset {
    let mut rng = Rng::new(seed);
    let ports = PORTS
        .iter()
        .map(|&port| PortPolicy {
            port,
            proto: Proto::Tcp,
            mode: Mode::Enforce,
            pos: Pos::default(),
        })
        .collect();
    let contact = |role: &str, i: usize| Contact {
        name: format!("{role} {i}"),
        position: None,
        phone: format!("+1 303 555 {:04}", i % 10000),
        email: format!("{role}{i}@example.org"),
    };
    let sites = (0..prefixes.len().div_ceil(10))
        .map(|i| Site {
            name: format!("Site {i}"),
            contacts: Contacts {
                site: contact("site", i),
                technical: contact("noc", i),
                billing: contact("billing", i),
            },
            pos: Pos::default(),
        })
        .collect();
    let entries = prefixes
        .iter()
        .enumerate()
        .map(|(i, &prefix)| {
            let permit = !rng.chance(10);
            let mask = rng.range(1, 7);
            let ports = PORTS
                .iter()
                .enumerate()
                .filter(|(b, _)| mask & (1 << b) != 0)
                .map(|(_, &port)| PortSel { port, proto: None })
                .collect();
            Entry {
                site: i / 10,
                kind: if permit {
                    EntryKind::Permit
                } else {
                    EntryKind::Block
                },
                prefix,
                ports,
                device: permit.then(|| "Mail relay".to_owned()),
                domain: None,
                reason: (!permit).then(|| "infected".to_owned()),
                pos: Pos::default(),
            }
        })
        .collect();
    Ruleset {
        ports,
        sites,
        entries,
    }
}

/// The ruleset as the permit file an operator would write.
pub fn yaml(rules: &Ruleset) -> String {
    let mut s = String::with_capacity(rules.entries.len() * 80);
    s.push_str("ports:\n");
    for p in &rules.ports {
        let _ = writeln!(s, "  - {{port: {}, proto: {}}}", p.port, p.proto);
    }
    s.push_str("sites:\n");
    let contact = |s: &mut String, role: &str, c: &Contact| {
        let _ = writeln!(
            s,
            "      {role}: {{name: {}, phone: \"{}\", email: {}}}",
            c.name, c.phone, c.email
        );
    };
    for (i, site) in rules.sites.iter().enumerate() {
        let _ = writeln!(s, "  - site: {}\n    contacts:", site.name);
        contact(&mut s, "site", &site.contacts.site);
        contact(&mut s, "technical", &site.contacts.technical);
        contact(&mut s, "billing", &site.contacts.billing);
        let mine = || rules.entries[i * 10..].iter().take_while(|e| e.site == i);
        for kind in [EntryKind::Permit, EntryKind::Block] {
            let mut first = true;
            for e in mine().filter(|e| e.kind == kind) {
                if first {
                    s.push_str(if kind == EntryKind::Permit {
                        "    permits:\n"
                    } else {
                        "    blocks:\n"
                    });
                    first = false;
                }
                let ports: Vec<String> = e.ports.iter().map(|p| p.to_string()).collect();
                let _ = write!(
                    s,
                    "      - {{ip: {}, ports: [{}], ",
                    e.prefix,
                    ports.join(", ")
                );
                match kind {
                    EntryKind::Permit => s.push_str("device: Mail relay}\n"),
                    EntryKind::Block => s.push_str("reason: infected}\n"),
                }
            }
        }
    }
    s
}

/// A random address inside `p`.
pub fn inside(rng: &mut Rng, p: IpNetwork) -> Addr {
    match p {
        IpNetwork::V4(n) => {
            let host = rng.u32().checked_shr(u32::from(n.netmask())).unwrap_or(0);
            Addr::V4(u32::from(n.network_address()) | host)
        }
        IpNetwork::V6(n) => {
            let host = rng.u128().checked_shr(u32::from(n.netmask())).unwrap_or(0);
            Addr::V6(u128::from(n.network_address()) | host)
        }
    }
}

/// A random address of the family, as a packet from the internet has:
/// anywhere for IPv4, in 2000::/3 for IPv6.
pub fn anywhere(rng: &mut Rng, family: Addr) -> Addr {
    match family {
        Addr::V4(_) => Addr::V4(rng.u32()),
        Addr::V6(_) => Addr::V6((rng.u128() >> 3) | (1u128 << 125)),
    }
}

/// A TCP SYN to port 25, as NFQUEUE hands it over (from the IP header on).
pub fn syn(src: Addr, dst: Addr) -> Vec<u8> {
    let b = match (src, dst) {
        (Addr::V4(s), Addr::V4(d)) => PacketBuilder::ipv4(s.to_be_bytes(), d.to_be_bytes(), 64),
        (Addr::V6(s), Addr::V6(d)) => PacketBuilder::ipv6(s.to_be_bytes(), d.to_be_bytes(), 64),
        _ => unreachable!("one family per packet"),
    };
    let b = b.tcp(40000, 25, 1, 1024).syn();
    let mut out = Vec::with_capacity(b.size(0));
    b.write(&mut out, &[]).unwrap();
    out
}

/// Packets a gateway judges: from a random address of the internet to an
/// address inside a random entry of the table (mail to an identified
/// server), so the source lookup usually misses and the destination's
/// decides: both addresses are looked up.
pub fn packets(prefixes: &[IpNetwork], n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let p = prefixes[(rng.next_u64() % prefixes.len() as u64) as usize];
            let dst = inside(&mut rng, p);
            syn(anywhere(&mut rng, dst), dst)
        })
        .collect()
}

/// Addresses inside random entries of the table.
pub fn addresses(prefixes: &[IpNetwork], n: usize, seed: u64) -> Vec<Addr> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let p = prefixes[(rng.next_u64() % prefixes.len() as u64) as usize];
            inside(&mut rng, p)
        })
        .collect()
}

/// [`decision::decide`] with the answer rows looked up by `row_of` instead
/// of the table's own structure: the decision path of a table built on a
/// reference structure. Same parsing, same rule.
#[inline]
pub fn decide_with(table: &Table, bytes: &[u8], row_of: impl Fn(Addr) -> u32) -> Decision {
    let Ok(p) = packet::parse(bytes) else {
        return decision::decide(table, bytes).decision;
    };
    let slot = p
        .ports
        .zip(Proto::from_number(p.proto))
        .and_then(|(ports, proto)| table.slot(proto, ports.dst));
    let Some(slot) = slot.filter(|_| !p.later_fragment) else {
        return decision::decide(table, bytes).decision;
    };
    let src = table.row_answer(row_of(p.src), slot);
    if src == Answer::Permit {
        return Decision::Accept(Accept::SourcePermit);
    }
    let dst = table.row_answer(row_of(p.dst), slot);
    if dst == Answer::Permit {
        return Decision::Accept(Accept::DestinationPermit);
    }
    let why = if src == Answer::Block || dst == Answer::Block {
        Unidentified::Blocked
    } else {
        Unidentified::NoEntry
    };
    decision::unidentified(table.mode(slot), why)
}

/// The permit table's rows in `ip_network_table`, the trie portgate used
/// before its compiled structure.
pub fn trie(rows: &PrefixRows) -> IpNetworkTable<u32> {
    let mut t = IpNetworkTable::new();
    for &(a, len, row) in &rows.v4 {
        t.insert(v4(a, len), row);
    }
    for &(a, len, row) in &rows.v6 {
        t.insert(v6(a, len), row);
    }
    t
}

pub fn trie_row(t: &IpNetworkTable<u32>, a: Addr) -> u32 {
    let hit = match a {
        Addr::V4(a) => t.longest_match_ipv4(Ipv4Addr::from(a)).map(|(_, r)| *r),
        Addr::V6(a) => t.longest_match_ipv6(Ipv6Addr::from(a)).map(|(_, r)| *r),
    };
    hit.unwrap_or(portgate::table::EMPTY_ROW)
}

/// DIR-24-8 (Gupta, Lin, McKeown 1998), IPv4 only: a 2^24-entry array on
/// the first 24 bits, and a 256-entry chunk for each /24 that holds longer
/// prefixes. One memory read for most addresses, two for the rest: the
/// speed limit of a direct-indexed table on this machine.
pub struct Dir248 {
    /// Row id, or `LONG | chunk` for a /24 with longer prefixes in it.
    tbl24: Vec<u32>,
    /// Row ids of the chunks, 256 per chunk (u16: the benchmark tables have
    /// far fewer distinct rows).
    long: Vec<u16>,
}

const LONG: u32 = 1 << 31;

impl Dir248 {
    pub fn build(rows: &PrefixRows) -> Dir248 {
        let mut by_len = rows.v4.clone();
        by_len.sort_by_key(|&(_, len, _)| len);
        let mut tbl24 = vec![portgate::table::EMPTY_ROW; 1 << 24];
        let mut long: Vec<u16> = Vec::new();
        for (a, len, row) in by_len {
            assert!(row < LONG && row <= u32::from(u16::MAX));
            if len <= 24 {
                let first = (a >> 8) as usize;
                let n = 1usize << (24 - len);
                tbl24[first..first + n].fill(row);
            } else {
                let i = (a >> 8) as usize;
                if tbl24[i] & LONG == 0 {
                    let chunk = (long.len() / 256) as u32;
                    long.resize(long.len() + 256, tbl24[i] as u16);
                    tbl24[i] = LONG | chunk;
                }
                let base = ((tbl24[i] & !LONG) as usize) << 8;
                let first = base + (a & 0xff) as usize;
                long[first..first + (1usize << (32 - len))].fill(row as u16);
            }
        }
        Dir248 { tbl24, long }
    }

    #[inline]
    pub fn lookup(&self, a: u32) -> u32 {
        let e = self.tbl24[(a >> 8) as usize];
        if e & LONG == 0 {
            e
        } else {
            u32::from(self.long[(((e & !LONG) as usize) << 8) | (a & 0xff) as usize])
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.tbl24.len() * 4 + self.long.len() * 2
    }

    pub fn row(&self, a: Addr) -> u32 {
        match a {
            Addr::V4(a) => self.lookup(a),
            Addr::V6(_) => unreachable!("DIR-24-8 is IPv4 only"),
        }
    }
}

/// Size labels: 1k, 100k, 1M.
pub fn label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

/// Peak resident memory of this process so far (VmHWM), in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
