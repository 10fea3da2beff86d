#!/usr/bin/env bash
# The main job, end to end, as root on a Debian machine:
#   sudo bash tests/demo.sh
# Installs what it needs, builds portgate, builds the netns lab (a customer
# site, a gateway, "the internet"), queues new port-25 connections on the
# gateway to portgate with rules/example.yaml, sends real mail with swaks to
# real SMTP servers (aiosmtpd), prints which mail was delivered and which was
# blocked, and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

bash tests/setup.sh
cargo build --release --locked --quiet
pg=${CARGO_TARGET_DIR:-$repo/target}/release/portgate

lab=pgdemo
work=$(mktemp -d)
cleanup() {
    bash "$repo/tests/lab.sh" down "$lab"
    rm -rf "$work"
}
trap cleanup EXIT
bash tests/lab.sh down "$lab"   # leftovers of an interrupted run
bash tests/lab.sh up "$lab"
on() { local ns=$1; shift; ip netns exec "$lab-$ns" "$@"; }

echo "== gateway: queue new port-25 connections to portgate (queue 0)"
for t in iptables ip6tables; do
    on gw "$t" -I FORWARD 1 -p tcp --dport 25 -m conntrack --ctstate NEW,INVALID -j NFQUEUE --queue-num 0
    on gw "$t" -S FORWARD | grep NFQUEUE | sed "s/^/   $t /"
done

echo "== gateway: portgate run --rules rules/example.yaml"
on gw "$pg" check rules/example.yaml | sed 's/^/   /'
# `ip netns exec` execs portgate, so $! is portgate's own pid. Its own
# control socket, so that a portgate already running on this machine (an
# installed package's) neither stops the demo nor is disturbed by it.
RUST_LOG=info ip netns exec "$lab-gw" "$pg" run --rules rules/example.yaml \
    --control "$work/control.sock" 2>"$work/portgate.log" &
pg_pid=$!
for _ in $(seq 100); do
    grep -q "serving netfilter queue" "$work/portgate.log" && break
    if ! kill -0 "$pg_pid" 2>/dev/null; then
        echo "demo: portgate did not start:" >&2
        sed 's/^/   /' "$work/portgate.log" >&2
        exit 1
    fi
    sleep 0.1
done

smtpd() { # ns address
    local dir=$work/mail-$2
    mkdir -p "$dir"/{cur,new,tmp}
    on "$1" /usr/bin/python3 -m aiosmtpd -n -l "$2:25" -c aiosmtpd.handlers.Mailbox "$dir" 2>/dev/null &
}
smtpd net 203.0.113.25
smtpd net 2001:db8:203::25
smtpd site 192.0.2.10
for _ in $(seq 100); do
    [ "$(on net ss -Hltn 'sport = :25' | wc -l)" -ge 2 ] && [ "$(on site ss -Hltn 'sport = :25' | wc -l)" -ge 1 ] && break
    sleep 0.1
done

echo "== mail through the gateway (swaks), and what \`portgate explain\` says of the addresses"
send() { # ns from to
    local result why
    if on "$1" swaks --server "$3" --local-interface "$2" --from demo@example.org \
        --to postmaster@example.com --header "Subject: demo from $2" --timeout 3 >/dev/null 2>&1; then
        result=delivered
    else
        result=BLOCKED
    fi
    # A connection passes when either end is identified: explain the end
    # that decided.
    why=$("$pg" explain --rules rules/example.yaml "$3" 25 | head -1)
    case $why in ACCEPT*) ;; *) why=$("$pg" explain --rules rules/example.yaml "$2" 25 | head -1) ;; esac
    printf '   %-9s %-16s -> %-17s  %s\n' "$result" "$2" "$3" "$why"
}
send site 192.0.2.10 203.0.113.25
send site 192.0.2.5 203.0.113.25
send site 2001:db8:10::25 2001:db8:203::25
send site 192.0.2.50 203.0.113.25
send site 2001:db8:99::50 2001:db8:203::25
send site 192.0.2.13 203.0.113.25
send net 203.0.113.7 192.0.2.10

echo "== what the servers received"
for d in "$work"/mail-*; do
    printf '   %-18s %s message(s): %s\n' "${d##*/mail-}" "$(ls "$d/new" | wc -l)" \
        "$(cat "$d"/new/* 2>/dev/null | sed -n 's/^Subject: //p' | paste -sd, -)"
done

echo "== portgate's log"
kill -TERM "$pg_pid" 2>/dev/null || true
wait "$pg_pid" || echo "   portgate exited with status $?"
sed 's/^/   /' "$work/portgate.log"
