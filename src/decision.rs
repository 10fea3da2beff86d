//! The packet decision: bytes in, [`Decision`] out.
//!
//! Contract: [`decide`] is a pure function of the compiled table and the
//! queued bytes. No I/O, no allocation, no locks, no logging; every input,
//! however broken, ends in a decision. The rule it implements:
//!
//! * for an address A, the deciding entry is the most specific entry covering
//!   A that lists the packet's destination port/protocol;
//! * accept when the deciding entry of the source or of the destination is a
//!   permit (an identified host sending, or mail to an identified server);
//! * otherwise the packet is unidentified: drop on an `enforce` port, accept
//!   (and report) on a `monitor` port.
//!
//! Packets outside that rule get these policies (the README explains why):
//! * a port or protocol not listed under `ports:` is not ours to judge:
//!   accepted, counted as unjudged;
//! * a fragment other than the first has no ports; the first fragment, which
//!   carries them, was judged: accepted, counted;
//! * bytes we cannot read addresses and ports from: dropped (fail closed),
//!   counted as malformed.

use crate::lpm::{Entry, Key, Lpm};
use crate::packet::{self, Addr, Malformed, Packet};
use crate::rules::{Mode, Proto};
use crate::table::{Answer, EMPTY_ROW, Slot, Table};

/// Why an unidentified packet was unidentified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unidentified {
    /// No entry covering source or destination lists the port.
    NoEntry,
    /// The deciding entry of the source or the destination is a block
    /// (a carve-out).
    Blocked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Accept {
    /// The source's deciding entry is a permit.
    SourcePermit,
    /// The destination's deciding entry is a permit.
    DestinationPermit,
    /// Unidentified, on a port in `monitor` mode: let through, reported.
    Monitored(Unidentified),
    /// The port/protocol is not listed under `ports:`.
    Unjudged,
    /// A fragment other than the first.
    LaterFragment,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Drop {
    /// Unidentified, on a port in `enforce` mode.
    Unidentified(Unidentified),
    /// The bytes could not be read as a packet we can judge.
    Malformed(Malformed),
}

#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    Accept(Accept),
    Drop(Drop),
}

impl Decision {
    pub fn is_accept(self) -> bool {
        matches!(self, Decision::Accept(_))
    }

    /// The packet is unidentified traffic on a judged port: dropped, or let
    /// through in monitor mode. This is what the operator's reports count.
    pub fn unidentified(self) -> Option<Unidentified> {
        match self {
            Decision::Accept(Accept::Monitored(u)) | Decision::Drop(Drop::Unidentified(u)) => {
                Some(u)
            }
            _ => None,
        }
    }
}

/// The decision and what it was made about, for counters and reports.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    /// The parsed packet; `None` when it was malformed.
    pub packet: Option<Packet>,
    /// The judged port's slot; `None` when no judged port was involved.
    pub slot: Option<Slot>,
}

/// Decides one queued packet.
pub fn decide(table: &Table, bytes: &[u8]) -> Verdict {
    let packet = match packet::parse(bytes) {
        Ok(p) => p,
        Err(m) => {
            return malformed(m);
        }
    };
    let (decision, slot) = match judged_slot(table, &packet) {
        Ok(slot) => (judge(table, slot, packet.src, packet.dst), Some(slot)),
        Err(d) => (d, None),
    };
    Verdict {
        decision,
        packet: Some(packet),
        slot,
    }
}

/// The slot of the packet's judged port, or the decision on a packet that
/// is not ours to judge.
#[inline]
fn judged_slot(table: &Table, p: &Packet) -> Result<Slot, Decision> {
    if p.later_fragment {
        return Err(Decision::Accept(Accept::LaterFragment));
    }
    p.ports
        .zip(Proto::from_number(p.proto))
        .and_then(|(ports, proto)| table.slot(proto, ports.dst))
        .ok_or(Decision::Accept(Accept::Unjudged))
}

/// Decides a packet the kernel queued as `ethertype` (0x0800 from an IPv4
/// hook, 0x86dd from an IPv6 one): bytes whose IP version disagrees with
/// the hook they came from are malformed, whatever they would parse as.
pub fn decide_queued(table: &Table, bytes: &[u8], ethertype: u16) -> Verdict {
    if !agrees(Queued { bytes, ethertype }) {
        return NOT_IP;
    }
    decide(table, bytes)
}

/// The verdict on bytes we cannot judge: dropped.
const fn malformed(why: Malformed) -> Verdict {
    Verdict {
        decision: Decision::Drop(Drop::Malformed(why)),
        packet: None,
        slot: None,
    }
}

/// The verdict on bytes whose IP version disagrees with the hook that
/// queued them.
const NOT_IP: Verdict = malformed(Malformed::NotIp);

/// Whether the IP version of the bytes agrees with the hook that queued
/// them (0x0800 from an IPv4 hook, 0x86dd from an IPv6 one).
#[inline]
fn agrees(q: Queued<'_>) -> bool {
    let version = q.bytes.first().map(|b| b >> 4);
    match q.ethertype {
        0x0800 => version == Some(4),
        0x86dd => version == Some(6),
        _ => true,
    }
}

/// A packet as the queue hands it over: its bytes, from the IP header on,
/// and the ethertype of the hook that queued it.
#[derive(Clone, Copy, Debug)]
pub struct Queued<'a> {
    pub bytes: &'a [u8],
    pub ethertype: u16,
}

/// What a verdict holds before its packet is decided (a drop, should it
/// ever be read undecided).
pub const UNDECIDED: Verdict = NOT_IP;

/// Packets [`decide_batch`] takes through each pass together: enough for
/// their cache misses to fill the processor's miss buffers.
const GROUP: usize = 32;

/// Decides many queued packets, exactly as [`decide_queued`] decides each:
/// `out[i]` is the verdict on `queued[i]`.
///
/// It takes them in groups through passes: parse; read the index entries
/// of both addresses; read the ranges those entries point to; finish the
/// lookups; decide. Each pass over the group is a handful of
/// instructions per packet, so the processor has the reads of many packets
/// under way at once and their cache misses overlap, where deciding one
/// packet after another overlaps few (`cargo bench --bench decision`
/// measures both).
///
/// # Panics
///
/// When `out` is not as long as `queued`.
pub fn decide_batch(table: &Table, queued: &[Queued<'_>], out: &mut [Verdict]) {
    assert_eq!(queued.len(), out.len(), "one verdict per packet");
    let (v4, v6) = table.lpm();
    // The packets of a group on a judged port, by family, with what their
    // lookups need: their addresses as the parser had them in registers
    // (read back from the verdicts just written, they would stall on the
    // stores; see `packet::parse_into`), and no family to tell apart in the
    // passes.
    let mut todo4 = [Todo::default(); GROUP];
    let mut todo6 = [Todo::default(); GROUP];
    for (q, o) in queued.chunks(GROUP).zip(out.chunks_mut(GROUP)) {
        let (mut n4, mut n6) = (0, 0);
        for (i, (&q, v)) in q.iter().zip(o.iter_mut()).enumerate() {
            match prepare_queued(table, q, v) {
                Some(ToLook::V4(slot, src, dst)) => push(&mut todo4, &mut n4, i, slot, src, dst),
                Some(ToLook::V6(slot, src, dst)) => push(&mut todo6, &mut n6, i, slot, src, dst),
                None => {}
            }
        }
        decide_group(table, v4, &todo4[..n4], o);
        if n6 > 0 {
            decide_group(table, v6, &todo6[..n6], o);
        }
    }
}

/// A packet of a group to look up and decide: its position in the group,
/// its judged port's slot, its addresses.
#[derive(Clone, Copy, Debug, Default)]
struct Todo<K> {
    i: u8,
    slot: Slot,
    src: K,
    dst: K,
}

/// Appends a packet to a group's list of one family's packets to look up.
#[inline]
fn push<K>(todo: &mut [Todo<K>], n: &mut usize, i: usize, slot: Slot, src: K, dst: K) {
    todo[*n] = Todo {
        i: i as u8,
        slot,
        src,
        dst,
    };
    *n += 1;
}

/// What [`prepare_queued`] leaves to look up: the slot and the addresses.
enum ToLook {
    V4(Slot, u32, u32),
    V6(Slot, u128, u128),
}

/// The lookups and decisions of one family's packets of a group, in
/// passes: read the index entries of both addresses; read the ranges they
/// point to; search them (the searches apart from the decisions: a
/// decision waits on its packet's two searches, and in a pass of their own
/// the searches of many packets are under way together); decide.
#[inline]
fn decide_group<K: Key>(table: &Table, lpm: &Lpm<K>, todo: &[Todo<K>], o: &mut [Verdict]) {
    let mut entries = [(Entry::default(), Entry::default()); GROUP];
    for (e, t) in entries.iter_mut().zip(todo) {
        *e = (lpm.entry(t.src), lpm.entry(t.dst));
    }
    let mut warm = 0;
    for &(s, d) in &entries[..todo.len()] {
        warm ^= lpm.warm(s) ^ lpm.warm(d);
    }
    std::hint::black_box(warm);
    let mut rows = [(EMPTY_ROW, EMPTY_ROW); GROUP];
    for (r, (&(s, d), t)) in rows.iter_mut().zip(entries.iter().zip(todo)) {
        *r = (lpm.resolve(t.src, s), lpm.resolve(t.dst, d));
    }
    for (&(src, dst), t) in rows.iter().zip(todo) {
        let v = &mut o[usize::from(t.i)];
        v.decision = judge_rows(table, t.slot, src, dst);
        v.slot = Some(t.slot);
    }
}

/// Everything of a queued packet's decision but its lookups, into `v`:
/// the verdict itself when the packet is not one to look up (malformed, a
/// later fragment, a port not judged), otherwise the parsed packet, and the
/// judged port's slot and the addresses returned.
#[inline]
fn prepare_queued(table: &Table, q: Queued<'_>, v: &mut Verdict) -> Option<ToLook> {
    if !agrees(q) {
        *v = NOT_IP;
        return None;
    }
    let look = packet::parse_into(q.bytes, &mut v.packet, |p| {
        judged_slot(table, p).and_then(|slot| match (p.src, p.dst) {
            (Addr::V4(s), Addr::V4(d)) => Ok(ToLook::V4(slot, s, d)),
            (Addr::V6(s), Addr::V6(d)) => Ok(ToLook::V6(slot, s, d)),
            // The parser reads both from one header; never, but closed.
            _ => Err(NOT_IP.decision),
        })
    });
    let look = match look {
        Ok(look) => look,
        Err(m) => {
            *v = malformed(m);
            return None;
        }
    };
    v.slot = None;
    match look {
        Ok(look) => Some(look),
        Err(d) => {
            v.decision = d;
            None
        }
    }
}

/// The decision for a flow on a judged port: the rule itself.
///
/// One address at a time, the destination only when the source's answer
/// did not settle it: the processor predicts these branches and runs on.
pub fn judge(table: &Table, slot: Slot, src: Addr, dst: Addr) -> Decision {
    let src_answer = table.answer(src, slot);
    if src_answer == Answer::Permit {
        return Decision::Accept(Accept::SourcePermit);
    }
    rule(table.mode(slot), src_answer, table.answer(dst, slot))
}

/// The rule, from the answers of source and destination.
const fn rule(mode: Mode, src: Answer, dst: Answer) -> Decision {
    match (src, dst) {
        (Answer::Permit, _) => Decision::Accept(Accept::SourcePermit),
        (_, Answer::Permit) => Decision::Accept(Accept::DestinationPermit),
        (Answer::Block, _) | (_, Answer::Block) => unidentified(mode, Unidentified::Blocked),
        (Answer::None, Answer::None) => unidentified(mode, Unidentified::NoEntry),
    }
}

/// [`judge`], given the answer rows of source and destination (for
/// [`decide_batch`], which looks up both).
///
/// The decision is read from a table rather than chosen by branches: which
/// way a packet goes depends on the permit table, and a mispredicted branch
/// on it would discard the work under way on the packets after it.
#[inline]
fn judge_rows(table: &Table, slot: Slot, src_row: u32, dst_row: u32) -> Decision {
    let src = table.row_bits(src_row, slot);
    let dst = table.row_bits(dst_row, slot);
    let mode = table.mode(slot) as usize;
    RULE[mode][src][dst]
}

/// [`rule`] as a table: `RULE[mode][source answer][destination answer]`,
/// indexed by the discriminant of [`Mode`] and by the answers' two bits as
/// a row holds them ([`Table::row_bits`]: the discriminant of [`Answer`];
/// 3, which no row holds, reads as a block).
const RULE: [[[Decision; 4]; 4]; 2] = {
    const ANSWERS: [Answer; 4] = [Answer::None, Answer::Permit, Answer::Block, Answer::Block];
    const BITS: [usize; 4] = [0, 1, 2, 2];
    const MODES: [Mode; 2] = [Mode::Enforce, Mode::Monitor];
    let mut t = [[[Decision::Accept(Accept::Unjudged); 4]; 4]; 2];
    let mut m = 0;
    while m < 2 {
        let mut s = 0;
        while s < 4 {
            let mut d = 0;
            while d < 4 {
                assert!(ANSWERS[s] as usize == BITS[s] && ANSWERS[d] as usize == BITS[d]);
                assert!(MODES[m] as usize == m);
                t[m][s][d] = rule(MODES[m], ANSWERS[s], ANSWERS[d]);
                d += 1;
            }
            s += 1;
        }
        m += 1;
    }
    t
};

/// What a port's mode does with unidentified traffic.
pub const fn unidentified(mode: Mode, why: Unidentified) -> Decision {
    match mode {
        Mode::Enforce => Decision::Drop(Drop::Unidentified(why)),
        Mode::Monitor => Decision::Accept(Accept::Monitored(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::load;
    use etherparse::PacketBuilder;

    const RULES: &str = r#"
ports:
  - {port: 25, proto: tcp, mode: enforce}
  - {port: 587, proto: tcp, mode: monitor}
  - {port: 53, proto: udp, mode: enforce}
sites:
  - site: Courthouse
    contacts:
      site:      {name: A, phone: "1", email: a@example.org}
      technical: {name: B, phone: "2", email: b@example.org}
      billing:   {name: C, phone: "3", email: c@example.org}
    permits:
      - {ip: 192.0.2.0/24, ports: [25], device: LAN}
      - {ip: 192.0.2.128/25, ports: [587], device: Upper half on submission}
      - {ip: 192.0.2.130, ports: [25], device: Re-permitted inside the block}
      - {ip: 198.51.100.25, ports: [25, 587], device: Inbound mail server}
      - {ip: 2001:db8:10::/48, ports: [25], device: v6 servers}
      - {ip: 203.0.113.53, ports: ["53/udp"], device: Resolver}
    blocks:
      - {ip: 192.0.2.128/29, ports: [25], reason: infected lab}
      - {ip: 2001:db8:10:bad::/64, ports: [25], reason: infected subnet}
"#;

    fn table() -> Table {
        Table::compile(&load(RULES, "t").unwrap().ruleset)
    }

    fn v4(s: &str) -> Addr {
        Addr::V4(s.parse::<std::net::Ipv4Addr>().unwrap().into())
    }

    fn v6(s: &str) -> Addr {
        Addr::V6(s.parse::<std::net::Ipv6Addr>().unwrap().into())
    }

    fn tcp_to(src: Addr, dst: Addr, port: u16) -> Vec<u8> {
        let b = match (src, dst) {
            (Addr::V4(s), Addr::V4(d)) => {
                PacketBuilder::ipv4(s.to_be_bytes(), d.to_be_bytes(), 64).tcp(40000, port, 1, 1)
            }
            (Addr::V6(s), Addr::V6(d)) => {
                PacketBuilder::ipv6(s.to_be_bytes(), d.to_be_bytes(), 64).tcp(40000, port, 1, 1)
            }
            _ => unreachable!(),
        };
        let mut out = Vec::new();
        b.syn().write(&mut out, &[]).unwrap();
        out
    }

    fn decide_tcp(t: &Table, src: Addr, dst: Addr, port: u16) -> Decision {
        decide(t, &tcp_to(src, dst, port)).decision
    }

    const OUT: &str = "203.0.113.99";

    #[test]
    fn most_specific_entry_wins() {
        let t = table();
        let out = v4(OUT);
        // /24 permit
        assert_eq!(
            decide_tcp(&t, v4("192.0.2.7"), out, 25),
            Decision::Accept(Accept::SourcePermit)
        );
        // /29 block inside it
        assert_eq!(
            decide_tcp(&t, v4("192.0.2.129"), out, 25),
            Decision::Drop(Drop::Unidentified(Unidentified::Blocked))
        );
        // /32 permit inside the block
        assert_eq!(
            decide_tcp(&t, v4("192.0.2.130"), out, 25),
            Decision::Accept(Accept::SourcePermit)
        );
        // just past the block: the /24 again
        assert_eq!(
            decide_tcp(&t, v4("192.0.2.136"), out, 25),
            Decision::Accept(Accept::SourcePermit)
        );
        // outside everything
        assert_eq!(
            decide_tcp(&t, v4("192.0.3.1"), out, 25),
            Decision::Drop(Drop::Unidentified(Unidentified::NoEntry))
        );
    }

    #[test]
    fn entries_decide_only_the_ports_they_list() {
        let t = table();
        let out = v4(OUT);
        // The /29 block lists only 25: on 587 the /25 permit decides.
        assert_eq!(
            decide_tcp(&t, v4("192.0.2.129"), out, 587),
            Decision::Accept(Accept::SourcePermit)
        );
        // The /24 permit lists only 25: on 587 the lower half is unidentified
        // (monitor mode: let through, reported).
        assert_eq!(
            decide_tcp(&t, v4("192.0.2.1"), out, 587),
            Decision::Accept(Accept::Monitored(Unidentified::NoEntry))
        );
    }

    #[test]
    fn inbound_to_a_permitted_server() {
        let t = table();
        assert_eq!(
            decide_tcp(&t, v4(OUT), v4("198.51.100.25"), 25),
            Decision::Accept(Accept::DestinationPermit)
        );
        // A blocked source reaching a permitted server is accepted: the
        // destination's permit decides (the rule is "source or destination").
        assert_eq!(
            decide_tcp(&t, v4("192.0.2.129"), v4("198.51.100.25"), 25),
            Decision::Accept(Accept::DestinationPermit)
        );
    }

    #[test]
    fn ipv6() {
        let t = table();
        let out = v6("2001:db8:203::25");
        assert_eq!(
            decide_tcp(&t, v6("2001:db8:10::1"), out, 25),
            Decision::Accept(Accept::SourcePermit)
        );
        assert_eq!(
            decide_tcp(&t, v6("2001:db8:10:bad::1"), out, 25),
            Decision::Drop(Drop::Unidentified(Unidentified::Blocked))
        );
        assert_eq!(
            decide_tcp(&t, v6("2001:db8:11::1"), out, 25),
            Decision::Drop(Drop::Unidentified(Unidentified::NoEntry))
        );
        // An IPv4-mapped source never matches IPv4 permits.
        assert_eq!(
            decide_tcp(&t, v6("::ffff:192.0.2.7"), out, 25),
            Decision::Drop(Drop::Unidentified(Unidentified::NoEntry))
        );
    }

    #[test]
    fn monitor_mode_accepts_and_reports() {
        let t = table();
        let d = decide_tcp(&t, v4("192.0.3.1"), v4(OUT), 587);
        assert_eq!(
            d,
            Decision::Accept(Accept::Monitored(Unidentified::NoEntry))
        );
        assert!(d.is_accept());
        assert_eq!(d.unidentified(), Some(Unidentified::NoEntry));
    }

    #[test]
    fn unjudged_ports_protocols_and_fragments_pass() {
        let t = table();
        assert_eq!(
            decide_tcp(&t, v4("192.0.3.1"), v4(OUT), 80),
            Decision::Accept(Accept::Unjudged)
        );
        // 53 is judged for UDP only.
        assert_eq!(
            decide_tcp(&t, v4("192.0.3.1"), v4(OUT), 53),
            Decision::Accept(Accept::Unjudged)
        );
        let udp = |src: &str, dst: &str| {
            let b = PacketBuilder::ipv4(
                src.parse::<std::net::Ipv4Addr>().unwrap().octets(),
                dst.parse::<std::net::Ipv4Addr>().unwrap().octets(),
                64,
            )
            .udp(5353, 53);
            let mut out = Vec::new();
            b.write(&mut out, &[0; 12]).unwrap();
            decide(&t, &out).decision
        };
        assert_eq!(
            udp("192.0.3.1", "203.0.113.53"),
            Decision::Accept(Accept::DestinationPermit)
        );
        assert_eq!(
            udp("192.0.3.1", "203.0.113.54"),
            Decision::Drop(Drop::Unidentified(Unidentified::NoEntry))
        );
        let mut frag = tcp_to(v4("192.0.3.1"), v4(OUT), 25);
        frag[7] = 4; // offset 32 bytes: a later fragment
        assert_eq!(
            decide(&t, &frag).decision,
            Decision::Accept(Accept::LaterFragment)
        );
    }

    #[test]
    fn malformed_is_dropped() {
        let t = table();
        let p = tcp_to(v4("192.0.2.7"), v4(OUT), 25);
        let v = decide(&t, &p[..22]);
        assert_eq!(
            v.decision,
            Decision::Drop(Drop::Malformed(Malformed::TransportTruncated))
        );
        assert_eq!(v.packet, None);
        assert_eq!(
            decide(&t, &[]).decision,
            Decision::Drop(Drop::Malformed(Malformed::NotIp))
        );
    }

    #[test]
    fn the_hook_family_must_match_the_packet() {
        let t = table();
        let v4 = tcp_to(v4("192.0.2.7"), v4(OUT), 25);
        let v6 = tcp_to(v6("2001:db8:10::1"), v6("2001:db8:203::25"), 25);
        assert!(decide_queued(&t, &v4, 0x0800).decision.is_accept());
        assert!(decide_queued(&t, &v6, 0x86dd).decision.is_accept());
        for (bytes, ethertype) in [(&v6, 0x0800), (&v4, 0x86dd)] {
            assert_eq!(
                decide_queued(&t, bytes, ethertype).decision,
                Decision::Drop(Drop::Malformed(Malformed::NotIp))
            );
        }
    }

    #[test]
    fn empty_rules_drop_everything_judged() {
        let t = Table::compile(
            &load("ports:\n  - port: 25\nsites: []\n", "t")
                .unwrap()
                .ruleset,
        );
        assert_eq!(
            decide_tcp(&t, v4("192.0.2.7"), v4(OUT), 25),
            Decision::Drop(Drop::Unidentified(Unidentified::NoEntry))
        );
        assert_eq!(
            decide_tcp(&t, v4("192.0.2.7"), v4(OUT), 26),
            Decision::Accept(Accept::Unjudged)
        );
    }

    #[test]
    fn many_judged_ports_span_several_words() {
        // 130 judged ports: answer rows are three u64 words wide.
        let mut text = String::from("ports:\n");
        for p in 1000..1130 {
            text.push_str(&format!("  - port: {p}\n"));
        }
        text.push_str("sites:\n  - site: S\n    contacts:\n      site: {name: A, phone: \"1\", email: a@example.org}\n      technical: {name: A, phone: \"1\", email: a@example.org}\n      billing: {name: A, phone: \"1\", email: a@example.org}\n    permits:\n      - {ip: 192.0.2.0/24, ports: [1129, 1064, 1000], device: d}\n    blocks:\n      - {ip: 192.0.2.1, ports: [1129], reason: r}\n");
        let t = Table::compile(&load(&text, "t").unwrap().ruleset);
        let src = v4("192.0.2.9");
        for p in 1000..1130 {
            let expect = matches!(p, 1129 | 1064 | 1000);
            assert_eq!(
                decide_tcp(&t, src, v4(OUT), p).is_accept(),
                expect,
                "port {p}"
            );
        }
        assert!(!decide_tcp(&t, v4("192.0.2.1"), v4(OUT), 1129).is_accept());
        assert!(decide_tcp(&t, v4("192.0.2.1"), v4(OUT), 1064).is_accept());
    }
}
