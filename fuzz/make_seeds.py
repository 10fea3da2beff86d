#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora (committed; rerun after changing
tests/hostile_packets.py): real packets, crafted with Debian's python3-scapy
by the hostile-packet lab's own case list, cut to the 256-byte copy range
as the queue delivers them; the same packets wrapped in nfnetlink_queue
messages as the kernel sends them; and permit files.

    /usr/bin/python3 fuzz/make_seeds.py
"""

import hashlib
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import hostile_packets  # noqa: E402

COPY_RANGE = 256


def attr(kind, payload):
    a = struct.pack("=HH", 4 + len(payload), kind) + payload
    return a + b"\0" * (-len(a) % 4)


def packet_message(queue, ident, ip, hook):
    """An NFQNL_MSG_PACKET as the kernel builds it: packet header (id,
    hardware protocol, hook), in/out interface, hardware address (FORWARD
    only), payload cut to the copy range, and the length before the cut."""
    family = 10 if ip[0] >> 4 == 6 else 2
    hw = 0x86DD if family == 10 else 0x0800
    attrs = attr(1, struct.pack("!IHB", ident, hw, hook))
    attrs += attr(5 if hook == 2 else 6, struct.pack("!I", 7))
    if hook == 2:
        attrs += attr(9, struct.pack("!HH", 6, 0) + bytes.fromhex("020000000001") + b"\0\0")
    attrs += attr(10, ip[:COPY_RANGE])
    if len(ip) > COPY_RANGE:
        attrs += attr(13, struct.pack("!I", len(ip)))
    body = struct.pack("!BBH", family, 0, queue) + attrs
    return struct.pack("=IHHII", 16 + len(body), 3 << 8, 0, 0, 0) + body


def ack(seq, errno):
    """NLMSG_ERROR for one of our requests."""
    req = struct.pack("=IHHII", 20, 3 << 8 | 2, 5, seq, 0)
    return struct.pack("=IHHII", 36, 2, 0, 0, 0) + struct.pack("=i", -errno) + req


def write(directory, data):
    os.makedirs(directory, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def main():
    corpus = os.path.join(HERE, "corpus")
    for target in ("decide", "wire_messages", "rules_load", "rules_fast_path"):
        shutil.rmtree(os.path.join(corpus, target), ignore_errors=True)

    ident = 1
    for name, (path, packets) in hostile_packets.cases().items():
        hook = 3 if path == "output" else 2  # NF_INET_LOCAL_OUT, NF_INET_FORWARD
        batch = b""
        for p in packets:
            write(os.path.join(corpus, "decide"), p[:COPY_RANGE])
            batch += packet_message(0, ident, p, hook)
            ident += 1
        write(os.path.join(corpus, "wire_messages"), batch)
    write(os.path.join(corpus, "wire_messages"), ack(1, 0) + ack(2, 16))

    rules = os.path.join(corpus, "rules_load")
    with open(os.path.join(HERE, "..", "rules", "example.yaml"), "rb") as f:
        example = f.read()
    write(rules, example)
    # Two typos and a host-bits error: the README's `check` example.
    write(rules, example.replace(b"ports: [25]\n        device: Monitoring",
                                 b"prots: [25]\n        device: Monitoring")
          .replace(b"192.0.2.0/28", b"192.0.2.5/28"))
    write(rules, b"""ports:
  - {port: 25, proto: tcp}
  - {port: 53, proto: udp, mode: monitor}
sites:
  - site: S
    contacts:
      site:      {name: A, phone: "1", email: a@example.org}
      technical: {name: B, phone: "2", email: b@example.org}
      billing:   {name: C, phone: "3", email: c@example.org}
    permits:
      - {ip: 192.0.2.0/24, ports: [25], device: LAN}
      - {ip: 192.0.2.130, ports: [25, "53/udp"], device: Re-permitted}
      - {ip: 2001:db8:10::/48, ports: [25], device: v6, domain: mx.example.org}
      - {ip: 0.0.0.0/0, ports: ["53/udp"], device: everyone}
    blocks:
      - {ip: 192.0.2.128/29, ports: [25], reason: infected lab}
      - {ip: 2001:db8:10:bad::/64, ports: [25], reason: infected subnet}
""")
    # The fast path's fuzz target: the same permit files, and the shapes
    # the YAML fast path takes or leaves to saphyr (block style, indentless
    # sequences, quotes and escapes, CRLF, `---`).
    fast = os.path.join(corpus, "rules_fast_path")
    for name in sorted(os.listdir(rules)):
        with open(os.path.join(rules, name), "rb") as f:
            write(fast, f.read())
    write(fast, """---
ports:
- port: 25
  proto: tcp
- {port: 587, 'proto': "tcp"}
sites:
- site: 'Caf\u00e9 ''Central'''
  contacts:
    site: {name: "A \\\\ \\"B\\"", phone: "+1 303", email: a@example.org}  # c
    technical:
      name: B
      phone: '2'
      email: b@example.org
    billing: {name: C, phone: "3", email: c@example.org}
  permits:
  - ip: ::1
    ports:
    - 25
    - "587/tcp"
    device: relay # comment
""".encode())
    write(fast, example.replace(b"\n", b"\r\n"))


if __name__ == "__main__":
    main()
