//! Parsing of the bytes the kernel hands us for a queued packet.
//!
//! Contract: [`parse`] takes any byte slice (untrusted, possibly cut short by
//! the queue's copy range) and returns either the flow identity the decision
//! needs — protocol, addresses and ports — or a [`Malformed`] reason. It never
//! panics and never allocates. The payload starts at the IP header (NFQUEUE
//! carries no link layer), for packets queued from FORWARD and from OUTPUT
//! alike.
//!
//! What counts as malformed is deliberately narrow: only what keeps us from
//! reading the addresses and, for a port-carrying protocol, the ports. IP and
//! transport checksums are the kernel's business (it has already checked them
//! on the way in), and bytes past the copy range are simply not ours to see.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{IpNumber, LaxIpSlice, LenSource};

/// IP protocol numbers that carry 16-bit source and destination ports in
/// their first four bytes.
const PORTED: [u8; 4] = [
    IpNumber::TCP.0,
    IpNumber::UDP.0,
    IpNumber::SCTP.0,
    136, // UDP-Lite
];

/// An IP address as the lookup tables key it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Addr {
    V4(u32),
    V6(u128),
}

impl From<Addr> for std::net::IpAddr {
    fn from(a: Addr) -> Self {
        match a {
            Addr::V4(v) => Ipv4Addr::from(v).into(),
            Addr::V6(v) => Ipv6Addr::from(v).into(),
        }
    }
}

impl From<std::net::IpAddr> for Addr {
    fn from(a: std::net::IpAddr) -> Self {
        match a {
            std::net::IpAddr::V4(v) => Addr::V4(v.into()),
            std::net::IpAddr::V6(v) => Addr::V6(v.into()),
        }
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::net::IpAddr::from(*self).fmt(f)
    }
}

/// What the decision needs to know about one queued packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// IP protocol number of the transport header (after IPv6 extension
    /// headers); for a later fragment, the protocol its IPv4 header or its
    /// IPv6 fragment header names.
    pub proto: u8,
    pub src: Addr,
    pub dst: Addr,
    /// The transport's ports: `Some` for TCP, UDP, SCTP and UDP-Lite when the
    /// packet is not a later fragment; `None` otherwise.
    pub ports: Option<Ports>,
    /// True for a fragment other than the first: it carries no transport
    /// header, so no ports.
    pub later_fragment: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub src: u16,
    pub dst: u16,
}

/// Why a queued packet could not be judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// Empty, or the version nibble is neither 4 nor 6.
    NotIp,
    /// The IP header is cut short, its IHL is below 5 or past the end, or
    /// its total length is smaller than the header itself.
    IpHeader,
    /// An IPv6 extension header is cut short or malformed.
    ExtensionHeader,
    /// A port-carrying transport header ends before its ports.
    TransportTruncated,
    /// A TCP fragment at offset 8 bytes: it can only exist to overwrite the
    /// ports or flags of the first fragment (RFC 1858).
    OverlappingFragment,
}

impl Malformed {
    pub const ALL: [Malformed; 5] = [
        Malformed::NotIp,
        Malformed::IpHeader,
        Malformed::ExtensionHeader,
        Malformed::TransportTruncated,
        Malformed::OverlappingFragment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::NotIp => "not_ip",
            Malformed::IpHeader => "ip_header",
            Malformed::ExtensionHeader => "extension_header",
            Malformed::TransportTruncated => "transport_truncated",
            Malformed::OverlappingFragment => "overlapping_fragment",
        }
    }
}

/// Reads protocol, addresses and ports from a queued packet's bytes.
pub fn parse(bytes: &[u8]) -> Result<Packet, Malformed> {
    let mut out = None;
    parse_into(bytes, &mut out, |&p| p)
}

/// [`parse`], into `out`, with `then` applied to the packet on the way:
/// the way to keep many packets' fields in place.
///
/// The usual packet's fields go from registers both to `then` and into
/// `out`. Taken from [`parse`]'s result instead, the packet went through a
/// temporary, written in narrow stores and read back in wide ones, and a
/// look at the stored packet right after storing it read two fields in one
/// load: store-forwarding stalls that cost some 15% of a batch's decisions
/// (`perf annotate`).
#[inline(always)]
pub fn parse_into<R>(
    bytes: &[u8],
    out: &mut Option<Packet>,
    then: impl FnOnce(&Packet) -> R,
) -> Result<R, Malformed> {
    match plain_into(bytes, out, then) {
        Plain::Read(r) => Ok(r),
        Plain::Truncated => Err(Malformed::TransportTruncated),
        Plain::Other(then) => {
            let p = general(bytes)?;
            let r = then(&p);
            *out = Some(p);
            Ok(r)
        }
    }
}

/// What [`plain_into`] made of a packet.
enum Plain<R, F> {
    /// Read, into `out`, and what `then` returned.
    Read(R),
    /// A plain packet cut before its ports.
    Truncated,
    /// Not a plain packet: for [`general`], and `then` back.
    Other(F),
}

/// [`plain_into`], returning the packet (for the tests).
#[cfg(test)]
fn plain(b: &[u8]) -> Option<Result<Packet, Malformed>> {
    let mut out = None;
    match plain_into(b, &mut out, |_| ()) {
        Plain::Read(()) => out.map(Ok),
        Plain::Truncated => Some(Err(Malformed::TransportTruncated)),
        Plain::Other(_) => None,
    }
}

/// The packets a mail gateway queues all day — IPv4 without options or
/// fragment offset, IPv6 without extension headers, carrying TCP, UDP, SCTP
/// or UDP-Lite — read straight from their fixed offsets into `out`, after
/// `then` has seen them. [`Plain::Other`], with `then` back, for anything
/// else, which [`general`] reads. Where both answer they agree:
/// `plain_and_general_agree` checks it on every prefix of many packets.
#[inline(always)]
fn plain_into<R, F: FnOnce(&Packet) -> R>(
    b: &[u8],
    out: &mut Option<Packet>,
    then: F,
) -> Plain<R, F> {
    let Some(&first) = b.first() else {
        return Plain::Other(then);
    };
    let (src, dst, proto, transport, end) = match first {
        0x45 => {
            let Some(h) = b.get(..20) else {
                return Plain::Other(then);
            };
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            // A fragment offset: a later fragment (the general path knows
            // the rules); a total length below the header: malformed.
            if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 || total < 20 {
                return Plain::Other(then);
            }
            let src = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
            let dst = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
            (Addr::V4(src), Addr::V4(dst), h[9], 20, total.min(b.len()))
        }
        v if v >> 4 == 6 => {
            let Some(h) = b.get(..40) else {
                return Plain::Other(then);
            };
            let payload = usize::from(u16::from_be_bytes([h[4], h[5]]));
            // A payload length of 0 (a jumbogram) or past what we hold: the
            // bytes we hold are the packet, as the general path reads it.
            let end = if payload == 0 || 40 + payload > b.len() {
                b.len()
            } else {
                40 + payload
            };
            let mut a = [0u8; 16];
            a.copy_from_slice(&h[8..24]);
            let src = u128::from_be_bytes(a);
            a.copy_from_slice(&h[24..40]);
            let dst = u128::from_be_bytes(a);
            (Addr::V6(src), Addr::V6(dst), h[6], 40, end)
        }
        _ => return Plain::Other(then),
    };
    if !PORTED.contains(&proto) {
        return Plain::Other(then);
    }
    match b.get(transport..end.max(transport)) {
        Some([s0, s1, d0, d1, ..]) => {
            let p = Packet {
                proto,
                src,
                dst,
                ports: Some(Ports {
                    src: u16::from_be_bytes([*s0, *s1]),
                    dst: u16::from_be_bytes([*d0, *d1]),
                }),
                later_fragment: false,
            };
            let r = then(&p);
            *out = Some(p);
            Plain::Read(r)
        }
        _ => Plain::Truncated,
    }
}

/// Every packet, through etherparse.
#[inline(never)]
fn general(bytes: &[u8]) -> Result<Packet, Malformed> {
    // Lax slicing tolerates what the copy range cut off (total length larger
    // than what we hold); strict slicing would call every truncated packet
    // broken.
    let (ip, ext_err) = LaxIpSlice::from_slice(bytes).map_err(|e| match e {
        etherparse::err::ip::LaxHeaderSliceError::Content(
            etherparse::err::ip::HeaderError::UnsupportedIpVersion { .. },
        ) => Malformed::NotIp,
        _ => {
            if bytes.is_empty() {
                Malformed::NotIp
            } else {
                Malformed::IpHeader
            }
        }
    })?;
    let (src, dst, later_fragment) = match &ip {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            // etherparse falls back to the slice length when total_len is
            // smaller than the header; the kernel would never forward such a
            // packet, so neither do we.
            if v4.payload().len_source == LenSource::Slice
                && usize::from(h.total_len()) < h.slice().len()
            {
                return Err(Malformed::IpHeader);
            }
            let offset = h.fragments_offset().value();
            (
                Addr::V4(u32::from_be_bytes(h.source())),
                Addr::V4(u32::from_be_bytes(h.destination())),
                // The protocol field, not what follows an authentication
                // header: a later fragment's bytes are not headers.
                (offset != 0).then(|| (offset, h.protocol().0)),
            )
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            // The first fragment header with a nonzero offset among the
            // extension headers read before any error, as the kernel's
            // ipv6_find_hdr() finds it. What follows it is the middle of
            // the fragmentable part, not headers, however etherparse went on
            // to read it.
            let exts = v6.extensions();
            let later = later_fragment_v6(exts.first_header().map(|n| n.0), exts.slice());
            (
                Addr::V6(u128::from_be_bytes(h.source())),
                Addr::V6(u128::from_be_bytes(h.destination())),
                later,
            )
        }
    };

    if let Some((offset, proto)) = later_fragment {
        if offset == 1 && proto == IpNumber::TCP.0 {
            return Err(Malformed::OverlappingFragment);
        }
        return Ok(Packet {
            proto,
            src,
            dst,
            ports: None,
            later_fragment: true,
        });
    }
    if ext_err.is_some() {
        return Err(Malformed::ExtensionHeader);
    }

    let payload = ip.payload();
    let proto = payload.ip_number.0;

    let ports = if PORTED.contains(&proto) {
        match payload.payload {
            [s0, s1, d0, d1, ..] => Some(Ports {
                src: u16::from_be_bytes([*s0, *s1]),
                dst: u16::from_be_bytes([*d0, *d1]),
            }),
            _ => return Err(Malformed::TransportTruncated),
        }
    } else {
        None
    };

    Ok(Packet {
        proto,
        src,
        dst,
        ports,
        later_fragment: false,
    })
}

/// Walks the IPv6 extension headers etherparse has already read (so their
/// lengths are known to fit) for the first fragment header with a nonzero
/// offset: `(offset, next header)`.
///
/// Not etherparse's own iterator: after a header that failed to parse it
/// reads past the end of the slice (its `Ipv6ExtensionSliceIter` trusts that
/// the chain ended cleanly), which is undefined behaviour on exactly the
/// packets we must survive.
fn later_fragment_v6(first: Option<u8>, mut rest: &[u8]) -> Option<(u16, u8)> {
    let mut next = first?;
    loop {
        let len = match next {
            // hop-by-hop, routing, destination options: 8-byte units after
            // the first 8
            0 | 43 | 60 => (usize::from(*rest.get(1)?) + 1) * 8,
            44 => {
                let b = rest.get(..8)?;
                let offset = u16::from_be_bytes([b[2], b[3]]) >> 3;
                if offset != 0 {
                    return Some((offset, b[0]));
                }
                8
            }
            // authentication header: 4-byte units after the first 8
            51 => (usize::from(*rest.get(1)?) + 2) * 4,
            _ => return None,
        };
        next = *rest.first()?;
        rest = rest.get(len..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    /// Packets the fast path reads: every protocol, both families, lengths
    /// that lie, and every cut of them.
    fn near_plain() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<bool>(),
            prop::sample::select(vec![1u8, 6, 17, 51, 58, 132, 136, 0, 43, 44, 60]),
            prop::collection::vec(any::<u8>(), 0..48),
            // Lengths near the real ones, where the edge cases are.
            prop_oneof![0u16..100, any::<u16>()],
            prop_oneof![Just(0u16), Just(0x2000), Just(0x4000), any::<u16>()],
            any::<u8>(),
        )
            .prop_map(|(v6, proto, body, len, frag, tweak)| {
                let mut p = if v6 {
                    let mut h = vec![0x60, 0, 0, 0];
                    h.extend_from_slice(&len.to_be_bytes()[..]);
                    h.push(proto);
                    h.push(64);
                    h.extend((0..32).map(|i| i as u8 ^ tweak));
                    h
                } else {
                    let mut h = vec![0x45, 0];
                    h.extend_from_slice(&len.to_be_bytes()[..]);
                    h.extend_from_slice(&[0, 0]);
                    h.extend_from_slice(&(frag & 0x3fff).to_be_bytes()[..]);
                    h.push(64);
                    h.push(proto);
                    h.extend_from_slice(&[0, 0]);
                    h.extend((0..8).map(|i| i as u8 ^ tweak));
                    h
                };
                p.extend_from_slice(&body);
                p
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn plain_and_general_agree(p in near_plain()) {
            for n in 0..=p.len() {
                if let Some(fast) = plain(&p[..n]) {
                    prop_assert_eq!(fast, general(&p[..n]), "{:02x?}", &p[..n]);
                }
            }
        }
    }

    #[test]
    fn ipv6_payload_length_zero_reads_what_we_hold() {
        // A payload length of 0 (a jumbogram's, or unset): both paths read
        // the bytes held, so the ports are there.
        let mut p = tcp6([0x20; 16], [0x20; 16], 25);
        p[4..6].copy_from_slice(&[0, 0]);
        assert_eq!(plain(&p), Some(general(&p)));
        assert_eq!(parse(&p).unwrap().ports.unwrap().dst, 25);
    }

    #[test]
    fn the_fast_path_is_taken_for_plain_packets() {
        assert!(plain(&tcp4([192, 0, 2, 1], [192, 0, 2, 2], 25)).is_some());
        assert!(plain(&tcp6([0x20; 16], [0x20; 16], 25)).is_some());
    }

    fn tcp4(src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
        let b = PacketBuilder::ipv4(src, dst, 64)
            .tcp(40000, dport, 1, 1024)
            .syn();
        let mut out = Vec::with_capacity(b.size(0));
        b.write(&mut out, &[]).unwrap();
        out
    }

    fn tcp6(src: [u8; 16], dst: [u8; 16], dport: u16) -> Vec<u8> {
        let b = PacketBuilder::ipv6(src, dst, 64)
            .tcp(40000, dport, 1, 1024)
            .syn();
        let mut out = Vec::with_capacity(b.size(0));
        b.write(&mut out, &[]).unwrap();
        out
    }

    const V6_SRC: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
    ];
    const V6_DST: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
    ];

    #[test]
    fn ipv4_tcp_syn() {
        let p = parse(&tcp4([192, 0, 2, 10], [198, 51, 100, 25], 25)).unwrap();
        assert_eq!(p.proto, 6);
        assert_eq!(p.src, Addr::V4(0xc000_020a));
        assert_eq!(p.dst, Addr::V4(0xc633_6419));
        assert_eq!(
            p.ports,
            Some(Ports {
                src: 40000,
                dst: 25
            })
        );
        assert!(!p.later_fragment);
    }

    #[test]
    fn ipv6_tcp_syn() {
        let p = parse(&tcp6(V6_SRC, V6_DST, 25)).unwrap();
        assert_eq!(p.src, Addr::V6(u128::from_be_bytes(V6_SRC)));
        assert_eq!(p.dst, Addr::V6(u128::from_be_bytes(V6_DST)));
        assert_eq!(p.ports.unwrap().dst, 25);
    }

    #[test]
    fn ipv4_with_options() {
        let mut p = tcp4([192, 0, 2, 10], [198, 51, 100, 25], 25);
        // Rebuild with IHL 6: one 4-byte option (NOP NOP NOP EOL).
        let mut with = p[..20].to_vec();
        with[0] = 0x46;
        with.extend_from_slice(&[1, 1, 1, 0]);
        with.extend_from_slice(&p[20..]);
        let total = u16::try_from(with.len()).unwrap();
        with[2..4].copy_from_slice(&total.to_be_bytes());
        p = with;
        let parsed = parse(&p).unwrap();
        assert_eq!(parsed.ports.unwrap().dst, 25);
    }

    #[test]
    fn truncated_by_copy_range_still_parses() {
        let b = PacketBuilder::ipv4([192, 0, 2, 10], [198, 51, 100, 25], 64).tcp(1, 25, 1, 1);
        let mut out = Vec::new();
        b.write(&mut out, &[0u8; 1400]).unwrap();
        // The kernel copied only 64 bytes; total_len still says 1440.
        let p = parse(&out[..64]).unwrap();
        assert_eq!(p.ports.unwrap().dst, 25);
        // Only the first 4 bytes of TCP are needed.
        assert_eq!(parse(&out[..24]).unwrap().ports.unwrap().dst, 25);
    }

    #[test]
    fn every_truncation_is_handled() {
        let v4 = tcp4([192, 0, 2, 10], [198, 51, 100, 25], 25);
        for n in 0..v4.len() {
            let r = parse(&v4[..n]);
            match n {
                0 => assert_eq!(r, Err(Malformed::NotIp)),
                1..=19 => assert_eq!(r, Err(Malformed::IpHeader), "len {n}"),
                20..=23 => assert_eq!(r, Err(Malformed::TransportTruncated), "len {n}"),
                _ => assert!(r.is_ok(), "len {n}"),
            }
        }
        let v6 = tcp6(V6_SRC, V6_DST, 25);
        for n in 1..v6.len() {
            let r = parse(&v6[..n]);
            match n {
                1..=39 => assert_eq!(r, Err(Malformed::IpHeader), "len {n}"),
                40..=43 => assert_eq!(r, Err(Malformed::TransportTruncated), "len {n}"),
                _ => assert!(r.is_ok(), "len {n}"),
            }
        }
    }

    #[test]
    fn bad_ihl_and_version() {
        let mut p = tcp4([192, 0, 2, 10], [198, 51, 100, 25], 25);
        p[0] = 0x44; // IHL 4 < 5
        assert_eq!(parse(&p), Err(Malformed::IpHeader));
        p[0] = 0x4f; // IHL 15: 60 bytes, past the 40-byte packet
        assert_eq!(parse(&p), Err(Malformed::IpHeader));
        p[0] = 0x55;
        assert_eq!(parse(&p), Err(Malformed::NotIp));
        assert_eq!(parse(&[]), Err(Malformed::NotIp));
    }

    #[test]
    fn total_length_smaller_than_header() {
        let mut p = tcp4([192, 0, 2, 10], [198, 51, 100, 25], 25);
        p[2..4].copy_from_slice(&12u16.to_be_bytes());
        assert_eq!(parse(&p), Err(Malformed::IpHeader));
    }

    #[test]
    fn total_length_shorter_than_packet_cuts_transport() {
        // total_len says 22: only two bytes of TCP belong to the packet.
        let mut p = tcp4([192, 0, 2, 10], [198, 51, 100, 25], 25);
        p[2..4].copy_from_slice(&22u16.to_be_bytes());
        assert_eq!(parse(&p), Err(Malformed::TransportTruncated));
    }

    fn ipv6_with_ext(exts: &[(u8, Vec<u8>)], dport: u16) -> Vec<u8> {
        // Fixed header, then the given extension headers in order, then TCP.
        let tcp = &tcp6(V6_SRC, V6_DST, dport)[40..];
        let mut body = Vec::new();
        for (i, (_, ext)) in exts.iter().enumerate() {
            let next = exts.get(i + 1).map_or(6, |(t, _)| *t);
            let mut e = ext.clone();
            e[0] = next;
            body.extend_from_slice(&e);
        }
        body.extend_from_slice(tcp);
        let mut out = vec![0x60, 0, 0, 0];
        out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        out.push(exts.first().map_or(6, |(t, _)| *t));
        out.push(64);
        out.extend_from_slice(&V6_SRC);
        out.extend_from_slice(&V6_DST);
        out.extend_from_slice(&body);
        out
    }

    fn opts8() -> Vec<u8> {
        // next, hdr-ext-len 0, PadN of 4 bytes
        vec![0, 0, 1, 4, 0, 0, 0, 0]
    }

    #[test]
    fn ipv6_extension_headers_before_tcp() {
        let routing = vec![0, 0, 0, 0, 0, 0, 0, 0]; // type 0, segments left 0
        let p = ipv6_with_ext(&[(0, opts8()), (43, routing), (60, opts8())], 25);
        let parsed = parse(&p).unwrap();
        assert_eq!(parsed.proto, 6);
        assert_eq!(parsed.ports.unwrap().dst, 25);
    }

    #[test]
    fn ipv6_truncated_extension_header() {
        let p = ipv6_with_ext(&[(0, opts8()), (60, opts8())], 25);
        assert_eq!(parse(&p[..44]), Err(Malformed::ExtensionHeader));
    }

    #[test]
    fn ipv6_fragments() {
        // first fragment: offset 0, M=1 — ports visible
        let first = ipv6_with_ext(&[(44, vec![0, 0, 0, 1, 0, 0, 0, 7])], 25);
        let p = parse(&first).unwrap();
        assert_eq!(p.ports.unwrap().dst, 25);
        assert!(!p.later_fragment);
        // later fragment: offset 3 (24 bytes)
        let later = ipv6_with_ext(&[(44, vec![0, 0, 0, 3 << 3, 0, 0, 0, 7])], 25);
        let p = parse(&later).unwrap();
        assert!(p.later_fragment);
        assert_eq!(p.ports, None);
        // offset 1 with TCP: overlapping rewrite attempt
        let overlap = ipv6_with_ext(&[(44, vec![0, 0, 0, 1 << 3, 0, 0, 0, 7])], 25);
        assert_eq!(parse(&overlap), Err(Malformed::OverlappingFragment));
    }

    /// Bug: a later fragment whose fragment header (IPv6) or protocol field
    /// (IPv4) names an extension header — destination options or AH after
    /// the fragment header, as RFC 8200 orders them — was dropped as a
    /// malformed extension header: etherparse reads on past the fragment
    /// header and takes the fragment's data for headers. The README's policy
    /// for a later fragment is accept; only its offset and the protocol the
    /// fragment header names matter.
    #[test]
    fn later_fragment_of_a_packet_with_extension_headers_is_not_malformed() {
        // Fragment data that does not parse as any header: a length byte
        // pointing far past the end, then a zero AH payload length.
        let data = [6u8, 200, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        for next in [60u8, 43, 51, 0, 44, 6, 17] {
            let mut p = vec![0x60, 0, 0, 0, 0, 24, 44, 64];
            p.extend_from_slice(&V6_SRC);
            p.extend_from_slice(&V6_DST);
            p.extend_from_slice(&[next, 0, 0, 3 << 3, 0, 0, 0, 7]); // offset 24, last
            p.extend_from_slice(&data);
            let parsed = parse(&p).unwrap_or_else(|e| panic!("next header {next}: {e:?}"));
            assert!(parsed.later_fragment, "next header {next}");
            assert_eq!((parsed.proto, parsed.ports), (next, None));
            // Cut anywhere after the fragment header: still a later fragment.
            for n in 48..p.len() {
                assert!(
                    parse(&p[..n]).unwrap().later_fragment,
                    "next {next}, len {n}"
                );
            }
        }
        // IPv4: protocol AH, offset 32 bytes; the data is no AH header.
        let mut p = vec![
            0x45, 0, 0, 36, 0, 1, 0, 4, 64, 51, 0, 0, 192, 0, 2, 10, 203, 0, 113, 25,
        ];
        p.extend_from_slice(&data);
        let parsed = parse(&p).unwrap();
        assert!(parsed.later_fragment);
        assert_eq!((parsed.proto, parsed.ports), (51, None));
        // The first fragment of such a packet is still read through its
        // headers: destination options after the fragment header, then TCP.
        let first = ipv6_with_ext(&[(44, vec![0, 0, 0, 1, 0, 0, 0, 7]), (60, opts8())], 25);
        let parsed = parse(&first).unwrap();
        assert!(!parsed.later_fragment);
        assert_eq!((parsed.proto, parsed.ports.unwrap().dst), (6, 25));
        // Broken headers after a first fragment's fragment header stay
        // malformed: that is where the ports should be.
        assert_eq!(parse(&first[..52]), Err(Malformed::ExtensionHeader));
    }

    /// A good extension header followed by a broken one: malformed. The walk
    /// for fragment headers then looks only at what parsed (etherparse's own
    /// iterator would read past the slice here: undefined behaviour, caught
    /// by the standard library's debug checks).
    #[test]
    fn broken_extension_header_after_a_good_one() {
        let p = ipv6_with_ext(&[(60, opts8()), (60, opts8()), (43, opts8())], 25);
        for n in 48..64 {
            assert_eq!(parse(&p[..n]), Err(Malformed::ExtensionHeader), "len {n}");
        }
        let mut bad = p.clone();
        bad[49] = 200; // second header's length: far past the end
        assert_eq!(parse(&bad), Err(Malformed::ExtensionHeader));
        let mut hbh_late = p;
        hbh_late[48] = 0; // the first header says hop-by-hop follows
        assert_eq!(parse(&hbh_late), Err(Malformed::ExtensionHeader));
    }

    /// As the kernel's ipv6_find_hdr(): the first fragment header with a
    /// nonzero offset makes a later fragment, also behind an atomic one.
    #[test]
    fn nested_fragment_headers() {
        let atomic = vec![0, 0, 0, 0, 0, 0, 0, 1];
        let later = vec![0, 0, 0, 5 << 3, 0, 0, 0, 2];
        let p = ipv6_with_ext(&[(44, atomic.clone()), (44, later)], 80);
        assert!(parse(&p).unwrap().later_fragment);
        let p = ipv6_with_ext(&[(44, atomic.clone()), (44, atomic)], 25);
        assert_eq!(parse(&p).unwrap().ports.unwrap().dst, 25);
    }

    #[test]
    fn ipv4_fragments() {
        let mut p = tcp4([192, 0, 2, 10], [198, 51, 100, 25], 25);
        p[6] = 0x20; // MF, offset 0: first fragment
        assert_eq!(parse(&p).unwrap().ports.unwrap().dst, 25);
        p[6] = 0x00;
        p[7] = 0x05; // offset 5 (40 bytes)
        let later = parse(&p).unwrap();
        assert!(later.later_fragment);
        assert_eq!(later.ports, None);
        p[7] = 0x01;
        assert_eq!(parse(&p), Err(Malformed::OverlappingFragment));
    }

    #[test]
    fn udp_sctp_and_icmp() {
        let b = PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64).udp(5353, 53);
        let mut out = Vec::new();
        b.write(&mut out, &[1, 2, 3]).unwrap();
        let p = parse(&out).unwrap();
        assert_eq!((p.proto, p.ports.unwrap().dst), (17, 53));

        // SCTP: ports in the first four bytes of its common header
        let mut sctp = out.clone();
        sctp[9] = 132;
        let p = parse(&sctp).unwrap();
        assert_eq!((p.proto, p.ports.unwrap().dst), (132, 53));

        let b = PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64).icmpv4_echo_request(1, 1);
        let mut icmp = Vec::new();
        b.write(&mut icmp, &[]).unwrap();
        let p = parse(&icmp).unwrap();
        assert_eq!((p.proto, p.ports), (1, None));
    }
}
