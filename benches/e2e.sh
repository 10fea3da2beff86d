#!/usr/bin/env bash
# End to end: portgate on a real gateway path, against the kernel's own
# filter (iptables + an ipset hash:net set) and against the nfq crate, from
# the same traffic generator in the same run. Run as root; prints Markdown
# tables (and keeps them in benches/results/e2e.md).
#
#   sudo bash benches/e2e.sh [SECONDS=5] [ROUNDS=3] [PERMITS=100000] [RATE=60000]
#   FILTERS="ipset portgate-1q" sudo -E bash benches/e2e.sh ...   (a subset)
#   PORTGATE_B=/other/build/portgate FILTERS="portgate-1q portgate-b-1q" ...
#                                   (A/B: another build, as filter portgate-b-1q)
#   PERF=/some/dir ...              (also `perf record -a -g` over 3 s of each
#                                   filter's first max flood, into
#                                   DIR/perf-FILTER.data; see the README)
#
# The netns lab of the tests (tests/lab.sh): the site sends, the gateway
# filters, "the internet" receives. The permit file is PERMITS generated
# entries (benches/common: customer sites, mostly /32 hosts and /24-/29
# ranges) plus the lab's site: 192.0.2.0/25 permitted on port 25,
# 192.0.2.128/25 not. ipset judges by the same file (build_table ipset:
# its port-25 entries, blocks as nomatch).
#
# trafgen (netsniff-ng) sends TCP SYNs to 203.0.113.25:25 from random
# sources in 192.0.2.0/24 (half of them permitted) and 32 source ports, so
# conntrack holds a few thousand entries, not millions; the receiver drops
# them in its raw table and counts them by half, so a packet that should
# have been dropped and was delivered shows up (column "leaked").
#
# Filters on the gateway (FORWARD, -p tcp --dport 25 -m conntrack --ctstate
# NEW,INVALID, as the README recommends):
#   none            no rule: plain forwarding, the machine's ceiling
#   ipset           -j PG: accept src or dst in the set, drop the rest
#   portgate 1q     -j NFQUEUE --queue-num 0, portgate run --queues 0
#   portgate 2q     -j NFQUEUE --queue-balance 0:1, --queues 0-1
#   nfq crate 1q    -j NFQUEUE --queue-num 0, benches/e2e/nfq_baseline.rs
#
# Three measurements per filter:
#   max    trafgen as fast as it can for SECONDS, pinned to CPU 0: packets
#          judged per second (reached the rule and got a verdict; for
#          "none", forwarded), lost (sent but never judged: backlog or
#          queue overflow), leaked;
#   fixed  trafgen at RATE packets/s for SECONDS, below every filter's
#          maximum: whole-machine CPU (from /proc/stat, less the
#          generator's own user time) per judged packet, and the daemon's
#          CPU (user + system, all threads) per verdict;
#   connect  sequential TCP connects (benches/e2e/connect_latency.rs) from
#          a permitted address to a listener behind the gateway, no other
#          traffic: p50 / p99 of connect() in microseconds.
# Each is run ROUNDS times, filters interleaved, and the median is shown.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5} rounds=${2:-3} permits=${3:-100000} rate=${4:-60000}
connects=${CONNECTS:-3000}

bash tests/setup.sh
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    netsniff-ng ipset time ${PERF:+linux-perf} >/dev/null
cargo build --release --locked --quiet --bin portgate \
    --example build_table --example connect_latency --example nfq_baseline
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
pg=$bin/portgate

lab=pge site=pge-site gw=pge-gw net=pge-net
work=$(mktemp -d)
daemon= server=
cleanup() {
    if [ -n "$daemon" ]; then kill -KILL "$daemon" 2>/dev/null || true; fi
    # Stopped and waited for here, not killed with the lab's namespaces
    # (which would have bash report "Killed" at the end of every run).
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    bash tests/lab.sh down "$lab"
    rm -rf "$work"
}
trap cleanup EXIT
bash tests/lab.sh down "$lab"
bash tests/lab.sh up "$lab"
on() { ip netns exec "$1" "${@:2}"; }

# The permit file: generated sites, then the lab's.
"$bin/examples/build_table" generate v4-realistic "$permits" "$work/rules.yaml"
cat >>"$work/rules.yaml" <<'EOF'
  - site: Benchmark site
    contacts:
      site: {name: Bench, phone: "+1 303 555 0199", email: bench@example.org}
      technical: {name: Bench NOC, phone: "+1 303 555 0199", email: noc@example.org}
      billing: {name: Bench billing, phone: "+1 303 555 0199", email: billing@example.org}
    permits:
      - {ip: 192.0.2.0/25, ports: [25], device: Benchmark senders}
EOF
"$pg" check "$work/rules.yaml"
"$bin/examples/build_table" ipset "$work/rules.yaml" pg | on "$gw" ipset restore

# No neighbour resolution on the measured path.
on "$gw" ip neigh replace 203.0.113.25 dev "${lab}ng" nud permanent \
    lladdr "$(on "$net" cat "/sys/class/net/${lab}n/address")"
on "$gw" ip neigh replace 203.0.113.7 dev "${lab}ng" nud permanent \
    lladdr "$(on "$net" cat "/sys/class/net/${lab}n/address")"
# The receiver counts and drops the flood; 203.0.113.7 is the listener.
on "$net" iptables -t raw -A PREROUTING -d 203.0.113.25 -s 192.0.2.0/25 -j DROP
on "$net" iptables -t raw -A PREROUTING -d 203.0.113.25 -s 192.0.2.128/25 -j DROP
ip netns exec "$net" "$bin/examples/connect_latency" serve 203.0.113.7:25 &
server=$!

gwmac=$(on "$gw" cat "/sys/class/net/${lab}sg/address")
cat >"$work/syn.cfg" <<EOF
{ eth(da=$gwmac), ipv4(sa=192.0.2.0, sa[3]=drnd(), da=203.0.113.25, ttl=64, id=drnd()),
  tcp(sp=drnd(40000, 40031), dp=25, seq=drnd(), syn, win=64240) }
EOF

counter() { # NS TABLE CHAIN RULE-NUMBER -> packets
    on "$1" iptables -t "$2" -L "$3" -vnx | awk -v n="$4" 'NR == n + 2 { print $1 }'
}
kernel_queue_drops() { # sum of queue_dropped and user_dropped over all queues
    on "$gw" cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null |
        awk '{ s += $6 + $7 } END { print s + 0 }'
}
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
ticks_per_s=$(getconf CLK_TCK)
tx() { on "$site" cat "/sys/class/net/${lab}s/statistics/tx_packets"; }

filter_up() { # FILTER
    on "$gw" iptables -F FORWARD
    on "$gw" iptables -F PG 2>/dev/null || on "$gw" iptables -N PG
    local match=(-p tcp --dport 25 -m conntrack --ctstate NEW,INVALID)
    case $1 in
        none) ;;
        ipset)
            on "$gw" iptables -A FORWARD "${match[@]}" -j PG
            on "$gw" iptables -A PG -m set --match-set pg src -j ACCEPT
            on "$gw" iptables -A PG -m set --match-set pg dst -j ACCEPT
            on "$gw" iptables -A PG -j DROP
            ;;
        portgate-1q | portgate-b-1q | nfq-1q)
            on "$gw" iptables -A FORWARD "${match[@]}" -j NFQUEUE --queue-num 0 ;;
        portgate-2q)
            on "$gw" iptables -A FORWARD "${match[@]}" -j NFQUEUE --queue-balance 0:1 ;;
    esac
    local cmd=()
    case $1 in
        portgate-1q) cmd=("$pg" run --rules "$work/rules.yaml" --queues 0 --control "$work/control.sock") ;;
        portgate-2q) cmd=("$pg" run --rules "$work/rules.yaml" --queues 0-1 --control "$work/control.sock") ;;
        portgate-b-1q) cmd=("${PORTGATE_B:?the filter portgate-b-1q runs the build PORTGATE_B names}" run --rules "$work/rules.yaml" --queues 0 --control "$work/control.sock") ;;
        nfq-1q) cmd=("$bin/examples/nfq_baseline" "$work/rules.yaml" 0) ;;
        *) return 0 ;;
    esac
    # ip netns exec itself, not the shell function `on`: $! must be the
    # daemon's pid (ip netns exec execs it), not a subshell's, or the TERM
    # of filter_down would miss it.
    RUST_LOG=warn,portgate=info ip netns exec "$gw" "${cmd[@]}" 2>"$work/daemon.log" &
    daemon=$!
    for _ in $(seq 300); do
        grep -q "serving netfilter queue" "$work/daemon.log" && return 0
        sleep 0.1
    done
    cat "$work/daemon.log" >&2
    echo "e2e: $1 did not start" >&2
    exit 1
}
filter_down() {
    if [ -n "$daemon" ]; then
        kill -TERM "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
        daemon=
    fi
    on "$gw" iptables -F FORWARD
}

# One flood: prints "sent reached judged delivered leaked wall busy gen daemon".
flood() { # FILTER [RATE]
    local rate_args=() judged0 reached0 drops0 d0 l0 tx0 b0 p0 t0
    [ -n "${2:-}" ] && rate_args=(-b "${2}pps")
    on "$net" iptables -t raw -Z PREROUTING
    reached0=$( [ "$1" = none ] && echo 0 || counter "$gw" filter FORWARD 1)
    drops0=$(kernel_queue_drops)
    tx0=$(tx) b0=$(busy_ticks) p0=$( [ -n "$daemon" ] && proc_ticks "$daemon" || echo 0)
    t0=$(date +%s.%N)
    /usr/bin/time -f '%U' -o "$work/gen.time" \
        ip netns exec "$site" taskset -c 0 timeout -s INT "$seconds" \
        trafgen --no-sock-mem --no-cpu-stats -P 1 -o "${lab}s" -i "$work/syn.cfg" \
        "${rate_args[@]}" >/dev/null 2>&1 || true
    sleep 0.3 # let queued packets get their verdicts
    local t1 tx1 b1 p1 reached drops delivered leaked gen
    t1=$(date +%s.%N) tx1=$(tx) b1=$(busy_ticks)
    p1=$( [ -n "$daemon" ] && proc_ticks "$daemon" || echo 0)
    delivered=$(counter "$net" raw PREROUTING 1)
    leaked=$(counter "$net" raw PREROUTING 2)
    if [ "$1" = none ]; then
        reached=$((delivered + leaked)) drops=0
    else
        reached=$(( $(counter "$gw" filter FORWARD 1) - reached0 ))
        drops=$(( $(kernel_queue_drops) - drops0 ))
    fi
    gen=$(awk -v u="$(tail -n 1 "$work/gen.time")" -v hz="$ticks_per_s" 'BEGIN { printf "%d", u * hz }')
    echo "$((tx1 - tx0)) $reached $((reached - drops)) $delivered $leaked" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a - 0.3 }')" \
        "$((b1 - b0)) $gen $((p1 - p0))"
}

read -r -a filters <<<"${FILTERS:-none ipset portgate-1q portgate-2q nfq-1q}"
results=$work/results
: >"$results"
for r in $(seq "$rounds"); do
    for f in "${filters[@]}"; do
        filter_up "$f"
        perf=
        if [ -n "${PERF:-}" ] && [ "$r" = 1 ]; then
            mkdir -p "$PERF"
            perf record -a -g -o "$PERF/perf-$f.data" -- sleep 3 >/dev/null 2>&1 &
            perf=$!
        fi
        echo "max $f $(flood "$f")" >>"$results"
        if [ -n "$perf" ]; then wait "$perf" || true; fi
        echo "fixed $f $(flood "$f" "$rate")" >>"$results"
        if [ "$f" != portgate-2q ]; then
            echo "connect $f $(on "$site" "$bin/examples/connect_latency" connect 203.0.113.7:25 "$connects")" >>"$results"
        fi
        filter_down
        echo "e2e: round $r/$rounds: $f done" >&2
    done
done

mkdir -p benches/results
{
    echo "portgate end to end: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), kernel $(uname -r)"
    echo "sudo bash benches/e2e.sh $seconds $rounds $permits $rate; $permits generated permits + the lab's; median of $rounds rounds"
    echo
    awk -v hz="$ticks_per_s" '
    function median(key,   n, i, j, t, a) {
        n = split(vals[key], a, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
        return n ? a[int((n + 1) / 2)] : "-"
    }
    function add(key, v) { vals[key] = vals[key] " " v }
    $1 == "max" || $1 == "fixed" {
        # sent reached judged delivered leaked wall busy gen daemon
        f = $2; m = $1
        add(m f "sent", $3 / $8); add(m f "judged", $5 / $8)
        add(m f "lost", $3 ? 100 * ($3 - $5) / $3 : 0); add(m f "leaked", $7)
        add(m f "deliv", $5 ? 100 * $6 / $5 : 0)
        add(m f "cpu", $5 ? 1e6 * ($9 - $10) / hz / $5 : 0)
        add(m f "dcpu", $5 ? 1e6 * $11 / hz / $5 : 0)
        seen[f] = 1
    }
    $1 == "connect" {
        for (i = 3; i <= NF; i++) { split($i, kv, "="); add("c" $2 kv[1], kv[2]) }
    }
    END {
        order = "none ipset portgate-1q portgate-b-1q portgate-2q nfq-1q"
        n = split(order, fs, " ")
        base = ("ipset" in seen) ? median("maxipsetjudged") : 0
        print "| filter | sent/s (max) | judged/s (max) | vs ipset | lost | leaked | delivered of judged | machine CPU µs/pkt (fixed) | vs ipset | daemon CPU µs/verdict (fixed) |"
        print "|---|---|---|---|---|---|---|---|---|---|"
        bcpu = ("ipset" in seen) ? median("fixedipsetcpu") : 0
        for (i = 1; i <= n; i++) {
            f = fs[i]; if (!(f in seen)) continue
            j = median("max" f "judged"); c = median("fixed" f "cpu")
            printf "| %s | %.0f | %.0f | %s | %.1f%% | %s | %.1f%% | %.2f | %s | %s |\n", f,
                median("max" f "sent"), j, base ? sprintf("%.2f", j / base) : "-", median("max" f "lost"),
                f == "none" ? "-" : median("max" f "leaked") + median("fixed" f "leaked"), median("max" f "deliv"),
                c, bcpu ? sprintf("%.2f", c / bcpu) : "-",
                (f ~ /portgate|nfq/) ? sprintf("%.2f", median("fixed" f "dcpu")) : "-"
        }
        print ""
        print "| filter | connects | failed | p50 µs | p90 µs | p99 µs | p99 added vs none |"
        print "|---|---|---|---|---|---|---|"
        b99 = (vals["cnonep99_us"] != "") ? median("cnonep99_us") : ""
        for (i = 1; i <= n; i++) {
            f = fs[i]; if (vals["c" f "connects"] == "") continue
            printf "| %s | %s | %s | %.1f | %.1f | %.1f | %s |\n", f, median("c" f "connects"),
                median("c" f "failed"), median("c" f "p50_us"), median("c" f "p90_us"),
                median("c" f "p99_us"), b99 == "" ? "-" : sprintf("%+.1f", median("c" f "p99_us") - b99)
        }
    }' "$results"
} | if [ -n "${FILTERS:-}" ]; then cat; else tee benches/results/e2e.md; fi
[ -n "${FILTERS:-}" ] || cp "$results" benches/results/e2e.raw
