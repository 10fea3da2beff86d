#!/usr/bin/env bash
# Soak: does portgate's memory stay flat under endless churn of unidentified
# sources? Runs the release build in the netns lab, sends SYNs to port 25
# from ever-new IPv6 sources (benches/churn.py) for DURATION seconds at RATE
# packets a second, samples the daemon's RSS and its blocked-sources record
# every 5 s, and writes benches/results/soak.csv and soak.svg.
#   sudo bash benches/soak.sh [DURATION=600] [RATE=3000] [CAPACITY=65536]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-600} rate=${2:-3000} capacity=${3:-65536}
bash tests/setup.sh
cargo build --release --locked --quiet
pg=${CARGO_TARGET_DIR:-$PWD/target}/release/portgate
lab=pgsoak work=$(mktemp -d)
cleanup() { bash tests/lab.sh down "$lab"; rm -rf "$work"; }
trap cleanup EXIT
bash tests/lab.sh down "$lab"
bash tests/lab.sh up "$lab"
ip netns exec "$lab-gw" ip6tables -A FORWARD -p tcp --dport 25 -m conntrack --ctstate NEW,INVALID -j NFQUEUE --queue-num 0
ip netns exec "$lab-gw" "$pg" run --rules rules/example.yaml --control "$work/control.sock" \
    --blocked-capacity "$capacity" 2>"$work/portgate.log" &
pid=$!
for _ in $(seq 100); do [ -S "$work/control.sock" ] && break; sleep 0.1; done

ip netns exec "$lab-site" /usr/bin/python3 benches/churn.py 2001:db8:203::25 "$duration" "$rate" >"$work/sent" &
sender=$!
out=benches/results/soak.csv
echo "seconds,rss_kib,blocked_entries,blocked_evicted,packets,dropped_queue_full,enobufs" >"$out"
start=$(date +%s)
while kill -0 "$sender" 2>/dev/null; do
    now=$(( $(date +%s) - start ))
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    "$pg" status --json --control "$work/control.sock" | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin); q = s["queues"][0]; k = q.get("kernel") or {}
print(",".join(str(v) for v in [s["blocked"]["entries"], s["blocked"]["evicted"], q["packets"],
      k.get("dropped_queue_full", 0), q["enobufs"]]))' | sed "s/^/$now,$rss,/" >>"$out"
    sleep 5
done
wait "$sender"
kill -TERM "$pid"; wait "$pid" || true
/usr/bin/python3 benches/plot_soak.py "$out" benches/results/soak.svg \
    "portgate RSS under churn: $(cat "$work/sent") new sources in ${duration}s, record capacity $capacity"
column -s, -t "$out" | sed -n '1,3p;$p'
echo "wrote $out and benches/results/soak.svg"
