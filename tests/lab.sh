#!/usr/bin/env bash
# The netns lab: a customer site, a gateway and "the internet", wired with
# veth pairs and documentation addresses only. Used by the demo and by the
# integration tests (tests/common/mod.rs), so both run the same topology.
#
#   lab.sh up NAME     create namespaces NAME-site, NAME-gw, NAME-net
#   lab.sh down NAME   kill what runs in them and delete them (idempotent)
#
#   NAME-site  192.0.2.10  192.0.2.5  192.0.2.13  192.0.2.50    (IPv4 hosts)
#              2001:db8:10::25  2001:db8:99::50                (IPv6 hosts)
#       | veth  (gateway side: 192.0.2.1, 2001:db8:10::1, 2001:db8:99::1)
#   NAME-gw    forwards between the two links; iptables/ip6tables live here
#       | veth  (gateway side: 203.0.113.1, 2001:db8:203::1)
#   NAME-net   203.0.113.25  2001:db8:203::25  (a mail server out there)
#              203.0.113.7   2001:db8:203::7   (a client out there)
#
# Nothing in the lab routes anywhere but between these namespaces.
set -euo pipefail

name=${2:?usage: lab.sh up|down NAME}
site=$name-site gw=$name-gw net=$name-net
# veth names are limited to 15 characters: keep NAME short.
a=${name}s b=${name}n

on() { ip netns exec "$1" "${@:2}"; }

up() {
    for ns in "$site" "$gw" "$net"; do
        ip netns add "$ns"
        on "$ns" ip link set lo up
    done
    ip link add "$a" netns "$site" type veth peer name "${a}g" netns "$gw"
    ip link add "$b" netns "$net" type veth peer name "${b}g" netns "$gw"

    on "$gw" sysctl -qw net.ipv4.ip_forward=1
    on "$gw" sysctl -qw net.ipv6.conf.all.forwarding=1
    on "$gw" ip addr add 192.0.2.1/24 dev "${a}g"
    on "$gw" ip addr add 2001:db8:10::1/64 dev "${a}g" nodad
    on "$gw" ip addr add 2001:db8:99::1/64 dev "${a}g" nodad
    on "$gw" ip addr add 203.0.113.1/24 dev "${b}g"
    on "$gw" ip addr add 2001:db8:203::1/64 dev "${b}g" nodad
    on "$gw" ip link set "${a}g" up
    on "$gw" ip link set "${b}g" up

    for ip4 in 192.0.2.10 192.0.2.5 192.0.2.13 192.0.2.50; do
        on "$site" ip addr add "$ip4/24" dev "$a"
    done
    on "$site" ip addr add 2001:db8:10::25/64 dev "$a" nodad
    on "$site" ip addr add 2001:db8:99::50/64 dev "$a" nodad
    on "$site" ip link set "$a" up
    on "$site" ip route add default via 192.0.2.1
    on "$site" ip -6 route add default via 2001:db8:10::1

    for ip4 in 203.0.113.25 203.0.113.7; do
        on "$net" ip addr add "$ip4/24" dev "$b"
    done
    on "$net" ip addr add 2001:db8:203::25/64 dev "$b" nodad
    on "$net" ip addr add 2001:db8:203::7/64 dev "$b" nodad
    on "$net" ip link set "$b" up
    on "$net" ip route add default via 203.0.113.1
    on "$net" ip -6 route add default via 2001:db8:203::1
}

down() {
    for ns in "$site" "$gw" "$net"; do
        if ip netns pids "$ns" >/dev/null 2>&1; then
            ip netns pids "$ns" | xargs -r kill -KILL 2>/dev/null || true
            # Deleting the namespace drops its veths and its iptables rules.
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}

case $1 in
    up) up ;;
    down) down ;;
    *) echo "usage: lab.sh up|down NAME" >&2; exit 2 ;;
esac
