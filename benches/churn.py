#!/usr/bin/python3
"""Sends TCP SYNs to port 25 from ever-new IPv6 sources inside
2001:db8:ff00::/40 (documentation space), for the soak test: every packet is
an unidentified source the daemon has never seen.

    churn.py DESTINATION SECONDS RATE
"""
import random
import socket
import struct
import sys
import time

dst, seconds, rate = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
dst_bytes = socket.inet_pton(socket.AF_INET6, dst)
# IPPROTO_RAW on AF_INET6: we write the whole IPv6 header ourselves.
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
prefix = bytes.fromhex("20010db8ff")  # 2001:db8:ff00::/40
tcp = struct.pack("!HHIIBBHHH", 40000, 25, 1, 0, 5 << 4, 0x02, 1024, 0, 0)
sent = 0
start = time.monotonic()
while True:
    now = time.monotonic() - start
    if now >= seconds:
        break
    # Pace in small bursts to hold RATE packets per second.
    due = int(now * rate) - sent
    if due <= 0:
        time.sleep(0.001)
        continue
    for _ in range(min(due, 256)):
        src = prefix + random.getrandbits(88).to_bytes(11, "big")
        hdr = struct.pack("!IHBB", 6 << 28, len(tcp), 6, 64) + src + dst_bytes
        s.sendto(hdr + tcp, (dst, 0))
        sent += 1
print(sent)
