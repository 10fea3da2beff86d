#!/usr/bin/env bash
# Installs what the demo and the test suite need on a Debian machine (as root).
# Rust itself (cargo >= 1.88, as Cargo.toml's rust-version says) must already be installed, e.g. with rustup.
set -euo pipefail

packages=(
    iptables            # iptables/ip6tables with the NFQUEUE target
    iproute2            # ip netns, veth
    swaks               # the SMTP client of the lab
    libio-socket-inet6-perl  # swaks over IPv6 (only Recommended by swaks)
    python3-aiosmtpd    # the SMTP server of the lab (Debian's /usr/bin/python3)
    hping3              # exact numbers of SYNs, for counter tests
    python3-scapy       # hostile packets (tests/hostile_packets.py, Debian's /usr/bin/python3)
    prometheus          # promtool, to check the metrics file
)

if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found: install Rust 1.88 or newer (https://rustup.rs)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "setup: run as root (the lab builds network namespaces)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
