#!/usr/bin/python3
"""Hostile packets for the netns lab (tests/hostile.rs drives this).

Run with Debian's /usr/bin/python3 (python3-scapy), as root:

    hostile_packets.py LAB

LAB is the name tests/lab.sh was given: the namespaces LAB-site, LAB-gw and
LAB-net exist. Reads one case name per line on stdin; for each, sends the
case's packets, then a sentinel (a SYN from an identified host, which the
same queue judges after them), waits until the sentinel reaches the internet
side, and answers one JSON line on stdout:

    {"case": NAME, "sentinel": true,
     "packets": [{"sent_len": 40, "send_error": null, "arrived": false,
                  "arrived_len": null, "arrived_head": null}, ...]}

send_error is the errno name when the kernel refused to send a packet
(a raw socket refuses some headers outright).

Two paths into the gateway's queues:

* "forward": whole Ethernet frames written on the site's veth with a packet
  socket, so every byte is ours (lengths, checksums, IHL). The gateway's
  ip_rcv()/ipv6_rcv() see them first: what they refuse never reaches FORWARD.
* "output": raw IP sockets (IP_HDRINCL) in the gateway itself, so the
  packets are locally generated and queued from OUTPUT, without a hardware
  address. For IPv4 the kernel rewrites the total length and checksum, and
  assigns an id when it is zero; a header with IHL below 5 or past the end
  it refuses (EINVAL, Linux 6.18). A version nibble other than 4 still goes
  through: the only broken IPv4 header that reaches a queue here.

Arrival is seen by a packet socket on the internet side's veth. Packets are
told apart by a tag the gateway does not change: the IPv4 identification
plus the fragment field, or the IPv6 flow label; every packet sent here gets
its own.

Only documentation addresses are used.
"""

import ctypes
import errno
import fcntl
import json
import os
import select
import socket
import struct
import sys
import time

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_EOL, IPOption_NOP, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
)
from scapy.layers.sctp import SCTP, SCTPChunkInit
from scapy.packet import Raw

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SIOCGIFHWADDR = 0x8927

PERM4, UNID4, DST4 = "192.0.2.10", "192.0.2.50", "203.0.113.25"
FLAGS4 = "192.0.2.60"  # unidentified, behind the rule without conntrack
DOC4 = "192.0.2.61"  # unidentified, behind the README's own rule
GW4_SITE, GW4_NET = "192.0.2.1", "203.0.113.1"
PERM6, UNID6, DST6 = "2001:db8:10::25", "2001:db8:99::50", "2001:db8:203::25"
GW6_NET = "2001:db8:203::1"

_libc = ctypes.CDLL(None, use_errno=True)


def enter(netns):
    """Moves this (single-threaded) process into a network namespace.
    Sockets opened before keep the namespace they were opened in."""
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns {netns}: {os.strerror(e)}")
    finally:
        os.close(fd)


def mac_of(ifname):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        info = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
        return info[18:24]
    finally:
        s.close()


# --- tags --------------------------------------------------------------

_next_tag = [0x1000]


def tag():
    _next_tag[0] += 1
    return _next_tag[0]


def key_of(ip):
    """The tag of an IP packet as it travels (None if not ours)."""
    if len(ip) >= 8 and ip[0] >> 4 == 4:
        return ("4", ip[4:8].hex())
    if len(ip) >= 4 and ip[0] >> 4 == 6:
        return ("6", int.from_bytes(ip[1:4], "big") & 0xFFFFF)
    # Any other version nibble sent through an IPv4 raw socket.
    if len(ip) >= 8:
        return ("4", ip[4:8].hex())
    return None


# --- packet builders ---------------------------------------------------


def tcp_bytes(ip_layer, **kw):
    """A TCP segment (with its checksum for ip_layer's addresses)."""
    payload = kw.pop("payload", b"")
    kw.setdefault("sport", 40000)
    kw.setdefault("dport", 25)
    kw.setdefault("flags", "S")
    kw.setdefault("seq", 1000)
    pkt = ip_layer / TCP(**kw)
    if payload:
        pkt = pkt / Raw(payload)
    raw = bytes(pkt)
    hl = (raw[0] & 0xF) * 4 if raw[0] >> 4 == 4 else 40
    return raw[hl:]


def v4(src, dst=DST4, **kw):
    kw.setdefault("id", tag())
    return IP(src=src, dst=dst, ttl=64, **kw)


def v6(src, dst=DST6, **kw):
    return IPv6(src=src, dst=dst, hlim=64, fl=tag(), **kw)


def syn4(src, dst=DST4, ip=None, **kw):
    return bytes(v4(src, dst, **(ip or {})) / TCP(sport=40000, dport=25, flags=kw.pop("flags", "S"), **kw))


def syn6(src, dst=DST6, **kw):
    return bytes(v6(src, dst) / TCP(sport=40000, dport=25, flags=kw.pop("flags", "S"), **kw))


def patch(raw, at, data):
    return raw[:at] + data + raw[at + len(data):]


def frags4(src, payload=b"fragmented syn!!"):
    """A SYN with 16 bytes of data, in two IPv4 fragments: 24 bytes of TCP
    (ports, flags) in the first, the rest at offset 3 (24 bytes)."""
    seg = tcp_bytes(IP(src=src, dst=DST4), payload=payload)
    ident = tag()
    first = bytes(IP(src=src, dst=DST4, id=ident, flags="MF", frag=0, proto=6, ttl=64) / Raw(seg[:24]))
    later = bytes(IP(src=src, dst=DST4, id=ident, frag=3, proto=6, ttl=64) / Raw(seg[24:]))
    return [first, later]


def tiny_frags4(src):
    """A SYN in two IPv4 fragments, the first holding only 8 bytes of TCP
    (the ports and the sequence number, not the flags), the rest at offset
    1: no rule can read this first fragment's flags."""
    seg = tcp_bytes(IP(src=src, dst=DST4), payload=b"")
    ident = tag()
    first = bytes(IP(src=src, dst=DST4, id=ident, flags="MF", frag=0, proto=6, ttl=64) / Raw(seg[:8]))
    later = bytes(IP(src=src, dst=DST4, id=ident, frag=1, proto=6, ttl=64) / Raw(seg[8:]))
    return [first, later]


def frags6(src, payload=b"fragmented syn!!"):
    seg = tcp_bytes(IPv6(src=src, dst=DST6), payload=payload)
    ident = tag()
    first = bytes(v6(src) / IPv6ExtHdrFragment(nh=6, offset=0, m=1, id=ident) / Raw(seg[:24]))
    later = bytes(v6(src) / IPv6ExtHdrFragment(nh=6, offset=3, m=0, id=ident) / Raw(seg[24:]))
    return [first, later]


# Bytes that do not parse as any header: a length far past the end, and a
# zero AH payload length.
GARBAGE = bytes([6, 200, 0, 0]) + b"fragment data..."


def v4_raw_header(first_byte, tot_len, src=GW4_SITE, dst=DST4, proto=6):
    """20 bytes laid out as an IPv4 header, whatever the first byte says,
    then a SYN to port 25: for the raw socket, which leaves a header with
    IHL below 5 untouched."""
    hdr = struct.pack(
        "!BBHHHBBH4s4s", first_byte, 0, tot_len, tag(), 0, 64, proto, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )
    return hdr + tcp_bytes(IP(src=src, dst=dst))


# --- cases: name -> (path, [packet bytes]) ------------------------------


def cases():
    c = {}

    # IPv4 options: record route (the gateway writes its address in it) and
    # the largest header, 40 bytes of options.
    rr = [IPOption_NOP(), IPOption_RR(routers=["0.0.0.0"] * 3)]
    c["v4_options_unidentified"] = ("forward", [syn4(UNID4, ip={"options": rr})])
    c["v4_options_permitted"] = ("forward", [syn4(PERM4, ip={"options": rr})])
    c["v4_max_options_permitted"] = (
        "forward", [syn4(PERM4, ip={"options": [IPOption_NOP()] * 39 + [IPOption_EOL()]})])

    # Lengths that lie. ip_rcv() trims a packet to a shorter total length
    # (here: 2 bytes of TCP are left) and drops one that claims more than it
    # holds, or whose IHL is below 5 or past the end.
    c["v4_total_length_short"] = ("forward", [bytes(v4(PERM4, len=22) / TCP(sport=40000, dport=25, flags="S"))])
    c["v4_total_length_long"] = ("forward", [bytes(v4(PERM4, len=1000) / TCP(sport=40000, dport=25, flags="S"))])
    c["v4_ihl_below_5"] = ("forward", [bytes(v4(PERM4, ihl=4) / TCP(sport=40000, dport=25, flags="S"))])
    c["v4_ihl_past_end"] = ("forward", [bytes(v4(PERM4, ihl=15) / TCP(sport=40000, dport=25, flags="S"))])

    # Fragments: the first carries the ports and is judged; a later one is
    # accepted; one at offset 8 bytes is a flag/port rewrite (RFC 1858).
    c["v4_fragments_unidentified"] = ("forward", frags4(UNID4))
    c["v4_fragments_permitted"] = ("forward", frags4(PERM4))
    c["v4_overlapping_fragment"] = (
        "forward", [bytes(v4(PERM4, frag=1, proto=6) / Raw(b"\x00\x19" * 6))])
    # A later fragment of an AH-protected datagram: protocol 51, data that
    # is no AH header.
    c["v4_later_fragment_ah"] = ("forward", [bytes(v4(UNID4, frag=4, proto=51) / Raw(GARBAGE))])

    # TCP options with odd lengths (MSS of length 3, timestamp of length 1,
    # a zero length, a window scale running past the header), a data offset
    # past the end, odd total lengths.
    odd_opts = bytes([2, 3, 5, 8, 1, 30, 0, 3, 200, 0, 0, 0])
    c["tcp_odd_options_unidentified"] = (
        "forward", [bytes(v4(UNID4) / TCP(sport=40000, dport=25, flags="S", dataofs=8) / Raw(odd_opts))])
    c["tcp_odd_options_permitted"] = (
        "forward", [bytes(v4(PERM4) / TCP(sport=40000, dport=25, flags="S", dataofs=8) / Raw(odd_opts))])
    c["tcp_data_offset_past_end"] = (
        "forward", [bytes(v4(UNID4) / TCP(sport=40000, dport=25, flags="S", dataofs=15))])
    c["tcp_odd_total_lengths"] = ("forward", [
        bytes(v4(UNID4) / TCP(sport=40000, dport=25, flags="S") / Raw(b"x")),
        bytes(v4(PERM4) / TCP(sport=40000, dport=25, flags="S") / Raw(b"xyz")),
    ])

    # Flag combinations to port 25: judged by address, whatever the flags.
    c["tcp_flags_unidentified"] = ("forward", [
        syn4(UNID4, flags=f) for f in ["FPU", "SF", "SR", "SA", "", "FSRPAUEC"]
    ])
    c["tcp_flags_permitted"] = ("forward", [syn4(PERM4, flags="FPU")])

    # Other protocols, when a rule queues them.
    c["udp_judged_unidentified"] = ("forward", [bytes(v4(UNID4) / UDP(sport=40000, dport=53) / Raw(b"q"))])
    c["udp_judged_permitted"] = ("forward", [bytes(v4(PERM4) / UDP(sport=40000, dport=53) / Raw(b"q"))])
    c["udp_unjudged_port"] = ("forward", [bytes(v4(UNID4) / UDP(sport=40000, dport=5353) / Raw(b"q"))])
    c["sctp_port_25"] = ("forward", [bytes(v4(UNID4) / SCTP(sport=40000, dport=25) / SCTPChunkInit())])
    c["udplite_port_53"] = (
        "forward", [bytes(v4(UNID4, proto=136) / Raw(struct.pack("!HHHH", 40000, 53, 8, 0)))])
    c["icmp_echo"] = ("forward", [bytes(v4(UNID4) / ICMP())])

    # Larger than the 256-byte copy range: judged on its first 256 bytes,
    # and the whole packet goes on when accepted.
    big = b"\x00" * 1200
    c["large_syn_unidentified"] = ("forward", [bytes(v4(UNID4) / TCP(sport=40000, dport=25, flags="S") / Raw(big))])
    c["large_syn_permitted"] = ("forward", [bytes(v4(PERM4) / TCP(sport=40000, dport=25, flags="S") / Raw(big))])

    # IPv6 extension headers before TCP: hop-by-hop, destination options,
    # routing (segments left 0), destination options again (RFC 8200 order).
    def chain(src):
        return bytes(
            v6(src)
            / IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\x00\x00\x00\x00")])
            / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00\x00\x00\x00")])
            / IPv6ExtHdrRouting(type=0, segleft=0, addresses=[])
            / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00\x00\x00\x00")])
            / TCP(sport=40000, dport=25, flags="S")
        )

    c["v6_ext_headers_unidentified"] = ("forward", [chain(UNID6)])
    c["v6_ext_headers_permitted"] = ("forward", [chain(PERM6)])
    # Hop-by-hop not first (RFC 8200 forbids it; the gateway forwards it
    # without looking): malformed even from an identified host.
    c["v6_hop_by_hop_not_first"] = ("forward", [bytes(
        v6(PERM6) / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * 4)])
        / IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\x00" * 4)])
        / TCP(sport=40000, dport=25, flags="S"))])
    # A destination options header whose length runs past the packet.
    raw = bytes(v6(PERM6) / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * 4)]) / TCP(sport=40000, dport=25, flags="S"))
    c["v6_ext_header_past_end"] = ("forward", [patch(raw, 41, bytes([200]))])
    # The ports beyond the copy range: TCP starts at byte 256 (216 bytes of
    # destination options), or the options themselves run past it.
    c["v6_ports_past_copy_range"] = ("forward", [bytes(
        v6(PERM6) / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * 212)])
        / TCP(sport=40000, dport=25, flags="S"))])
    c["v6_headers_past_copy_range"] = ("forward", [bytes(
        v6(PERM6) / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * 228)])
        / TCP(sport=40000, dport=25, flags="S"))])
    c["v6_fragments_unidentified"] = ("forward", frags6(UNID6))
    c["v6_fragments_permitted"] = ("forward", frags6(PERM6))
    c["v6_overlapping_fragment"] = ("forward", [bytes(
        v6(PERM6) / IPv6ExtHdrFragment(nh=6, offset=1, m=1, id=tag()) / Raw(b"\x00\x19" * 4))])
    # Later fragments of datagrams with destination options or AH after the
    # fragment header (RFC 8200's order): their data is no header.
    c["v6_later_fragment_dest_opts"] = ("forward", [bytes(
        v6(UNID6) / IPv6ExtHdrFragment(nh=60, offset=3, m=0, id=tag()) / Raw(GARBAGE))])
    c["v6_later_fragment_ah"] = ("forward", [bytes(
        v6(UNID6) / IPv6ExtHdrFragment(nh=51, offset=3, m=1, id=tag()) / Raw(GARBAGE))])
    c["v6_tcp_flags_unidentified"] = ("forward", [syn6(UNID6, flags="FPU")])
    c["v6_udp_judged_unidentified"] = ("forward", [bytes(v6(UNID6) / UDP(sport=40000, dport=53) / Raw(b"q"))])
    c["v6_sctp_port_25"] = ("forward", [bytes(v6(UNID6) / SCTP(sport=40000, dport=25) / SCTPChunkInit())])
    c["icmpv6_echo"] = ("forward", [bytes(v6(UNID6) / ICMPv6EchoRequest())])

    # The rule without conntrack (-p tcp --dport 25 --tcp-flags SYN SYN),
    # which the test sets up for FLAGS4 alone: it queues a SYN and a
    # SYN+FIN, but neither a FIN/PSH/URG nor a later fragment (--dport never
    # matches one) -- nor a first fragment too short to show the flags, so
    # a SYN split that way passes unjudged. That is why the README's rule
    # uses conntrack.
    c["flags_rule_syn"] = ("forward", [syn4(FLAGS4)])
    c["flags_rule_syn_fin"] = ("forward", [syn4(FLAGS4, flags="SF")])
    c["flags_rule_fin_psh_urg"] = ("forward", [syn4(FLAGS4, flags="FPU")])
    c["flags_rule_fragments"] = ("forward", frags4(FLAGS4))
    c["flags_rule_tiny_first_fragment"] = ("forward", tiny_frags4(FLAGS4))

    # The README's rule (-p tcp --dport 25 -m conntrack --ctstate
    # NEW,INVALID), for DOC4 alone: conntrack reassembles fragments first,
    # and every first packet of a flow, whatever its flags, is judged.
    c["readme_rule_syn"] = ("forward", [syn4(DOC4)])
    c["readme_rule_syn_fin"] = ("forward", [syn4(DOC4, flags="SF")])
    c["readme_rule_fin_psh_urg"] = ("forward", [syn4(DOC4, flags="FPU")])
    c["readme_rule_fragments"] = ("forward", frags4(DOC4))
    c["readme_rule_tiny_first_fragment"] = ("forward", tiny_frags4(DOC4))

    # Queued from OUTPUT: locally generated by the gateway's raw sockets.
    c["out_ihl_below_5"] = ("output", [v4_raw_header(0x44, 0x0FFF), v4_raw_header(0x40, 40)])
    c["out_ihl_past_end"] = ("output", [v4_raw_header(0x4F, 40)])
    c["out_version_5"] = ("output", [v4_raw_header(0x55, 40), v4_raw_header(0x35, 40)])
    c["out_total_length_rewritten"] = ("output", [v4_raw_header(0x45, 1000), v4_raw_header(0x45, 10)])
    # IHL 6 over a 20-byte header: the first four bytes of TCP are taken for
    # an option, and the "ports" are the sequence number (0, 1000), as the
    # receiver would read them too.
    c["out_ihl_longer_than_header"] = ("output", [v4_raw_header(0x46, 40)])
    c["out_options_permitted"] = ("output", [syn4(GW4_SITE, ip={"options": rr})])
    c["out_unidentified"] = ("output", [syn4(GW4_NET)])
    c["out_fragments_permitted"] = ("output", frags4(GW4_SITE))
    raw = bytes(v6(GW6_NET) / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * 4)]) / TCP(sport=40000, dport=25, flags="S"))
    c["out_v6_ext_header_past_end"] = ("output", [patch(raw, 41, bytes([200]))])
    # Payload length 4: the ports are inside it. Payload length 2: they
    # are not.
    c["out_v6_payload_length_lying"] = ("output", [
        patch(syn6(PERM6), 4, struct.pack("!H", 4)),
        patch(syn6(PERM6), 4, struct.pack("!H", 2)),
    ])

    # With conntrack in use in the gateway (the test adds a rule that needs
    # it), nf_defrag reassembles before the filter table: the queue sees
    # one whole datagram, and a lone later fragment is held, never queued.
    c["defrag_v4_permitted"] = ("forward", frags4(PERM4))
    c["defrag_v4_unidentified"] = ("forward", frags4(UNID4))
    c["defrag_v4_lone_later_fragment"] = ("forward", frags4(PERM4)[1:])
    c["defrag_v6_permitted"] = ("forward", frags6(PERM6))
    c["defrag_v6_unidentified"] = ("forward", frags6(UNID6))
    return c


# --- the run -----------------------------------------------------------


def main():
    lab = sys.argv[1]
    site_if, gw_site_if, net_if = f"{lab}s", f"{lab}sg", f"{lab}n"

    enter(f"{lab}-net")
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sniff.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sniff.bind((net_if, 0))
    sniff.setblocking(False)

    enter(f"{lab}-gw")
    gw_mac = mac_of(gw_site_if)
    raw4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)

    enter(f"{lab}-site")
    site_mac = mac_of(site_if)
    inject = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    inject.bind((site_if, 0))

    def send(path, ip):
        if path == "forward":
            ethertype = b"\x86\xdd" if ip[0] >> 4 == 6 else b"\x08\x00"
            inject.send(gw_mac + site_mac + ethertype + ip)
        elif ip[0] >> 4 == 6:
            raw6.sendto(ip, (DST6, 0))
        else:
            raw4.sendto(ip, (DST4, 0))

    def sentinel(path):
        src = GW4_SITE if path == "output" else PERM4
        return bytes(v4(src) / TCP(sport=40001, dport=25, flags="S"))

    seen = {}

    def drain(deadline, want=None):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([sniff], [], [], left)
            if not r:
                return False
            while True:
                try:
                    frame, addr = sniff.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING or len(frame) < 14:
                    continue
                k = key_of(frame[14:])
                if k is not None:
                    seen[k] = frame[14:]
            if want is not None and want in seen:
                return True

    all_cases = cases()
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        path, packets = all_cases[name]
        seen.clear()
        drain(time.monotonic() + 0.01)
        seen.clear()
        errors = []
        for p in packets:
            try:
                send(path, p)
                errors.append(None)
            except OSError as e:
                errors.append(errno.errorcode.get(e.errno, str(e.errno)))
        s = sentinel(path)
        send(path, s)
        ok = drain(time.monotonic() + 5, want=key_of(s))
        drain(time.monotonic() + 0.05)
        out = []
        for p, err in zip(packets, errors):
            got = seen.get(key_of(p))
            out.append({
                "sent_len": len(p),
                "send_error": err,
                "arrived": got is not None,
                "arrived_len": None if got is None else len(got),
                # The first 8 bytes as they arrived: lengths the kernel
                # rewrote show here.
                "arrived_head": None if got is None else got[:8].hex(),
            })
        print(json.dumps({"case": name, "sentinel": ok, "packets": out}), flush=True)


if __name__ == "__main__":
    main()
