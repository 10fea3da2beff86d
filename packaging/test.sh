#!/usr/bin/env bash
# The Debian package, tested the way Debian would, as root on a Debian machine:
#   sudo bash packaging/test.sh
#
#  1. builds it (packaging/build.sh, with the pinned cargo-deb), and a copy
#     with a higher version for the upgrade;
#  2. lintian: no errors, no warnings (overrides, each with its reason, are in
#     packaging/lintian-overrides);
#  3. in a debootstrap'd Debian bookworm chroot: install, `portgate check` of
#     the shipped conffile as the service's user, an operator's edit, upgrade
#     (the edit stays), remove, purge (nothing is left: user, group, files),
#     install again and upgrade to a new template (it replaces the unedited
#     file, which stays readable by the service);
#  4. boots that root with systemd-nspawn: `systemd-analyze verify` prints
#     nothing, the exposure score, the service reaches active, reloads apply
#     a new permit and refuse a broken edit while it stays up, the watchdog
#     restarts a hung daemon, and with the example iptables fragments loaded
#     a permitted address's port-25 connection passes through the container
#     and an unpermitted one is dropped; the fail-closed and the
#     --queue-bypass fragment while portgate is stopped.
#
# Installs what it needs (apt-get), downloads Debian packages from the
# mirror only (PORTGATE_MIRROR, default deb.debian.org), and removes the
# chroot and the container whatever happens. The debootstrap'd root is cached
# as a tarball in the target directory (PORTGATE_FRESH=1 ignores the cache).
# Prints one line per check and closes with "packaging: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS

cargo_deb_version=3.8.0
suite=bookworm
mirror=${PORTGATE_MIRROR:-http://deb.debian.org/debian}
# systemd and dbus to boot; adduser is the package's dependency; the rest is
# for the tests (iptables for the fragments, nc for connections, man-db for
# the man page check of systemd-analyze verify, acl for the metrics recipe).
include=systemd,systemd-sysv,dbus,adduser,iproute2,iptables,netcat-openbsd,man-db,acl
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
cache=$CARGO_TARGET_DIR/packaging-test/$suite-$(echo "$include" | md5sum | cut -c1-8).tar

passed=0 failed=0
step() { printf '== %s (%ds)\n' "$*" $((SECONDS - started)); }
ok() { passed=$((passed + 1)); printf '   ok    %s\n' "$1"; }
bad() { failed=$((failed + 1)); printf '   FAIL  %s\n' "$1"; }
# check WHAT COMMAND...: one check; the command's output is shown if it fails.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        ok "$what"
    else
        bad "$what"
        printf '%s\n' "$out" | tail -n 30 | sed 's/^/         | /'
    fi
}
die() {
    printf '   FAIL  %s\n' "$*"
    failed=$((failed + 1))
    exit 1
}
summary() { printf 'packaging: %d passed, %d failed\n' "$passed" "$failed"; }

if [ "$(id -u)" != 0 ]; then
    echo "packaging/test.sh: run as root (debootstrap, chroot, systemd-nspawn)" >&2
    exit 1
fi

work=$(mktemp -d /tmp/portgate-pkgtest.XXXXXX)
root=$work/root
nspawn_pid=
debootstrap_pid=
cleanup() {
    local rc=$?
    set +e
    if [ -n "$debootstrap_pid" ] && kill -0 "$debootstrap_pid" 2>/dev/null; then
        kill -TERM -- "-$debootstrap_pid" # its own process group (setsid)
        wait "$debootstrap_pid" 2>/dev/null
    fi
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        # systemd-nspawn turns SIGTERM into an orderly shutdown of the
        # container; SIGKILL if it takes too long.
        kill -TERM "$nspawn_pid"
        for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$nspawn_pid" 2>/dev/null
        wait "$nspawn_pid" 2>/dev/null
    fi
    # Nothing stays mounted under the root before it is deleted.
    findmnt -rno TARGET | grep -F "$root/" | sort -r | xargs -r -n1 umount -l
    rm -rf --one-file-system "$work"
    printf 'packaging/test.sh took %d s\n' $((SECONDS - started))
    summary
    [ "$failed" = 0 ] || rc=1
    exit "$rc"
}
trap cleanup EXIT

step "install the tools (apt-get) and cargo-deb $cargo_deb_version"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    lintian debootstrap systemd-container iproute2 util-linux procps >/dev/null
# debootstrap (mostly waiting for the mirror) runs while cargo builds.
mkdir -p "$root"
if [ -s "$cache" ] && [ -z "${PORTGATE_FRESH:-}" ]; then
    from_cache=yes
else
    from_cache=no
    setsid debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" \
        >"$work/debootstrap.log" 2>&1 &
    debootstrap_pid=$!
fi

if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $cargo_deb_version" ]; then
    cargo install --quiet --locked cargo-deb --version "$cargo_deb_version"
fi

step "build the package, and the same at a higher version for the upgrade"
bash packaging/build.sh --quiet -o "$work/v1/" >/dev/null
bash packaging/build.sh --quiet --deb-revision 2 -o "$work/v2/" >/dev/null
deb1=$(ls "$work"/v1/portgate_*.deb)
deb2=$(ls "$work"/v2/portgate_*.deb)
echo "   $(basename "$deb1"), $(basename "$deb2")"

step "lintian"
# --fail-on covers what is not overridden; info tags are shown, not fatal.
check "lintian: no errors, no warnings" \
    lintian --fail-on error,warning --display-info "$deb1"
lintian --display-info "$deb1" 2>/dev/null | sed 's/^/         /' || true

step "debootstrap Debian $suite"
if [ "$from_cache" = yes ]; then
    tar -C "$root" -xf "$cache"
    echo "   from the cache $cache"
else
    wait "$debootstrap_pid" || { tail -20 "$work/debootstrap.log"; die "debootstrap"; }
    debootstrap_pid=
    mkdir -p "$(dirname "$cache")"
    tar -C "$root" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
fi

in_root() {
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@" </dev/null
}
# Every file of the root, but for the package database, caches, logs and
# the shadow tools' backups (/etc/passwd- and the like).
listing() {
    in_root find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run \
        -o -path /tmp -o -path /var/cache -o -path /var/log -o -path /var/lib/dpkg \
        -o -path /var/lib/apt -o -name '*-' \) -prune -o -print | sort
}
mkdir -p "$root/tmp/debs"
cp "$deb1" "$deb2" "$root/tmp/debs/"
pkg1=/tmp/debs/$(basename "$deb1")
pkg2=/tmp/debs/$(basename "$deb2")

step "chroot: install"
listing >"$work/before"
apt_in_root() { # LOG ARGS...: apt-get in the chroot; its output is shown if it fails
    local log=$work/$1
    shift
    in_root apt-get -y -qq --no-install-recommends "$@" >"$log" 2>&1 || { tail -20 "$log"; die "apt-get $*"; }
    ok "apt-get $*"
}
apt_in_root install.log install "$pkg1"

perm() { stat -c '%U:%G %a' "$root/$1"; }
service_user() {
    in_root getent passwd portgate | grep -E '^portgate:x:[0-9]{1,3}:[0-9]+::/nonexistent:/usr/sbin/nologin$' &&
        in_root getent group portgate
}
conffile() {
    [ "$(in_root stat -c '%U:%G %a' /etc/portgate/rules.yaml)" = "root:portgate 640" ] &&
        grep -qx /etc/portgate/rules.yaml "$root/var/lib/dpkg/info/portgate.conffiles"
}
shipped_rules_check() {
    [ "$(in_root runuser -u portgate -- portgate check /etc/portgate/rules.yaml)" = \
        "/etc/portgate/rules.yaml: ok: 0 sites, 0 permits, 0 blocks, 1 judged port" ]
}
docs() {
    in_root man -w portgate.8 && in_root man -w portgate-rules.5 &&
        test -s "$root/usr/share/bash-completion/completions/portgate" &&
        test -s "$root/usr/share/zsh/vendor-completions/_portgate" &&
        test -s "$root/usr/share/doc/portgate/examples/rules.v4.fail-closed"
}
hands_off_the_firewall() {
    [ "$(in_root dpkg -L portgate | grep '^/etc')" = $'/etc\n/etc/portgate\n/etc/portgate/rules.yaml' ] &&
        ! grep -l iptables "$root"/var/lib/dpkg/info/portgate.*rm "$root"/var/lib/dpkg/info/portgate.*inst
}
check "a system user and group portgate: no home, no login" service_user
check "/etc/portgate/rules.yaml: a conffile, root:portgate 0640" conffile
check "portgate check of the shipped conffile, as the service's user: it permits nothing" shipped_rules_check
check "man pages portgate(8) and portgate-rules(5), bash and zsh completions, examples" docs
check "the service is enabled" test -L "$root/etc/systemd/system/multi-user.target.wants/portgate.service"
check "no other file in /etc, no iptables in the maintainer scripts" hands_off_the_firewall

step "chroot: an operator's edit survives an upgrade"
sed -i 's/^sites: \[\]$/sites:\n  - site: Upgrade test\n    contacts:\n      site: {name: A, phone: "+1 303 555 0100", email: a@example.org}\n      technical: {name: B, phone: "+1 303 555 0101", email: b@example.org}\n      billing: {name: C, phone: "+1 303 555 0102", email: c@example.org}\n    permits:\n      - {ip: 192.0.2.10, ports: [25], device: relay}\n# an edit, kept across upgrades/' \
    "$root/etc/portgate/rules.yaml"
cp "$root/etc/portgate/rules.yaml" "$work/edited.yaml"
check "the edit passes portgate check" in_root portgate check /etc/portgate/rules.yaml
apt_in_root upgrade.log install "$pkg2"
v2=$(dpkg-deb -f "$deb2" Version)
check "upgraded to $v2" test "$(in_root dpkg-query -W -f '${Version}' portgate)" = "$v2"
edit_kept() {
    cmp "$work/edited.yaml" "$root/etc/portgate/rules.yaml" &&
        [ "$(in_root stat -c '%U:%G %a' /etc/portgate/rules.yaml)" = "root:portgate 640" ] &&
        [ "$(ls -A "$root/etc/portgate")" = rules.yaml ]
}
check "the edited conffile is kept, with its owner and mode, and no .dpkg-* copy" edit_kept

step "chroot: remove, then purge"
apt_in_root remove.log remove portgate
removed() {
    ! test -e "$root/usr/sbin/portgate" && test -f "$root/etc/portgate/rules.yaml" &&
        in_root getent passwd portgate
}
check "removed: the program is gone, the conffile and the user stay" removed
apt_in_root purge.log purge portgate
no_user() { ! grep -s '^portgate:' "$root"/etc/{passwd,group,shadow,gshadow,subuid,subgid}; }
no_files() {
    ! test -e "$root/etc/portgate" && ! in_root dpkg-query -W portgate &&
        [ -z "$(find "$root" -xdev -name '*portgate*' -not -path "$root/tmp/*" -not -path "$root/var/log/*")" ]
}
check "purged: no user, no group" no_user
check "purged: no /etc/portgate, nothing named portgate, nothing in dpkg's database" no_files
listing >"$work/after"
check "purged: the root has the files it had before the install" diff "$work/before" "$work/after"

step "chroot: install again; a new template replaces an unedited conffile"
apt_in_root reinstall.log install "$pkg2"
# The same package, repacked with a changed template at a higher version:
# dpkg replaces the unedited conffile (as root:root), and postinst gives it
# back to the group portgate.
repack=$work/repack
dpkg-deb -R "$deb2" "$repack"
sed -i "s/^Version: .*/Version: $v2+newtemplate/" "$repack/DEBIAN/control"
echo '# a newer template' >>"$repack/etc/portgate/rules.yaml"
dpkg-deb --root-owner-group -b "$repack" "$root/tmp/debs/newtemplate.deb" >/dev/null
apt_in_root newtemplate.log install /tmp/debs/newtemplate.deb
new_template() {
    cmp "$repack/etc/portgate/rules.yaml" "$root/etc/portgate/rules.yaml" &&
        [ "$(in_root stat -c '%U:%G %a' /etc/portgate/rules.yaml)" = "root:portgate 640" ] &&
        [ "$(ls -A "$root/etc/portgate")" = rules.yaml ]
}
check "the new template is in place, root:portgate 0640, no .dpkg-* copy" new_template

step "boot the root with systemd-nspawn, with the package installed"
# The container's own network namespace (--private-network) is the gateway.
# No machined, no systemd on the host: --register=no --keep-unit.
systemd-nspawn --quiet --register=no --keep-unit --private-network --boot \
    --machine="portgate-test-$$" --link-journal=no --console=read-only --directory "$root" \
    >"$work/console.log" 2>&1 </dev/null &
nspawn_pid=$!

# The container's init: the child of systemd-nspawn that is pid 1 in its own
# pid namespace.
leader=
for _ in $(seq 100); do
    for p in $(ps -o pid= --ppid "$nspawn_pid"); do
        [ "$(awk '/^NSpid:/ { print $NF }' "/proc/$p/status" 2>/dev/null)" = 1 ] && leader=$p
    done
    [ -n "$leader" ] && break
    kill -0 "$nspawn_pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$leader" ] || { tail -20 "$work/console.log"; die "systemd-nspawn did not start the container"; }

# in_ct COMMAND...: runs COMMAND in the container (all its namespaces and
# its root), with a clean environment.
in_ct() {
    nsenter --target "$leader" --mount --uts --ipc --net --pid --root --wd \
        /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 SYSTEMD_PAGER= "$@"
}
show() { in_ct systemctl show -P "$1" portgate; }
state=
for _ in $(seq 120); do
    state=$(in_ct timeout 60 systemctl is-system-running --wait 2>/dev/null) && break
    case $state in running | degraded) break ;; esac
    sleep 0.5
done
echo "   the container's systemd: $state"
[ "$state" = running ] || in_ct systemctl --failed --no-legend | sed 's/^/         /'
check "portgate.service is active" in_ct systemctl is-active portgate
[ "$(show ActiveState)" = active ] || in_ct journalctl -u portgate --no-pager -n 30 | sed 's/^/         | /'
check "READY, and the rules in force as the unit's status" \
    test "$(show StatusText)" = "generation 1: 0 sites, 0 permits, 0 blocks, 1 judged port"
only_net_admin() {
    local status
    status=/proc/$leader/root/proc/$(show MainPID)/status # the container's /proc
    [ "$(awk '/^Uid:/ { print $2 }' "$status")" = "$(in_ct id -u portgate)" ] &&
        grep -Eq '^CapEff:\s+0000000000001000$' "$status"
}
check "it runs as the user portgate with CAP_NET_ADMIN only" only_net_admin

step "systemd-analyze verify and security"
verify_err=$(in_ct systemd-analyze verify portgate.service 2>&1 >/dev/null) || true
check "systemd-analyze verify portgate.service prints nothing on stderr" test -z "$verify_err"
[ -z "$verify_err" ] || printf '%s\n' "$verify_err" | sed 's/^/         | /'
score=$(in_ct systemd-analyze security --no-pager portgate.service 2>/dev/null |
    sed -n 's/.*Overall exposure level for portgate.service: \([0-9.]*\).*/\1/p')
echo "   systemd-analyze security portgate.service: exposure $score"
check "exposure at most 2.0 (the README reports it)" awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }'

step "a gateway in the container: a customer site and the internet in network namespaces"
in_ct sh -euc '
    echo 1 >/proc/sys/net/ipv4/ip_forward
    echo 1 >/proc/sys/net/ipv6/conf/all/forwarding
    for n in site net; do
        ip netns add pg$n
        ip link add gw-$n type veth peer name eth0 netns pg$n
        ip link set gw-$n up
        ip -n pg$n link set lo up
        ip -n pg$n link set eth0 up
    done
    ip addr add 192.0.2.1/24 dev gw-site
    ip addr add 2001:db8:10::1/64 dev gw-site nodad
    ip addr add 203.0.113.1/24 dev gw-net
    ip addr add 2001:db8:203::1/64 dev gw-net nodad
    for a in 192.0.2.10/24 192.0.2.50/24; do ip -n pgsite addr add $a dev eth0; done
    for a in 2001:db8:10::25/64 2001:db8:10::50/64; do ip -n pgsite addr add $a dev eth0 nodad; done
    ip -n pgsite route add default via 192.0.2.1
    ip -n pgsite -6 route add default via 2001:db8:10::1
    ip -n pgnet addr add 203.0.113.25/24 dev eth0
    ip -n pgnet addr add 2001:db8:203::25/64 dev eth0 nodad
    ip -n pgnet route add default via 203.0.113.1
    ip -n pgnet -6 route add default via 2001:db8:203::1
    # Port-25 listeners in the internet, as units of the container.
    systemd-run --quiet --unit pg-smtp4 ip netns exec pgnet nc -lk 203.0.113.25 25
    systemd-run --quiet --unit pg-smtp6 ip netns exec pgnet nc -lk 2001:db8:203::25 25
'
# passes SRC DST: a port-25 connection from SRC in the site to DST in the
# internet, through the container, is established within 3 s.
passes() { in_ct ip netns exec pgsite nc -z -w 3 -s "$1" "$2" 25; }
dropped() { ! passes "$@"; }
listening() {
    for _ in $(seq 50); do
        [ "$(in_ct ip netns exec pgnet ss -Hltn 'sport = :25' | wc -l)" = 2 ] && return 0
        sleep 0.1
    done
    return 1
}
check "the internet listens on port 25" listening
check "without the iptables rule, 192.0.2.50 reaches port 25" passes 192.0.2.50 203.0.113.25
check "and 2001:db8:10::50 too" passes 2001:db8:10::50 2001:db8:203::25

step "load the example fragments, failing closed"
in_ct sh -ec '
    iptables-restore --noflush </usr/share/doc/portgate/examples/rules.v4.fail-closed
    ip6tables-restore --noflush </usr/share/doc/portgate/examples/rules.v6.fail-closed
'
one_rule_each() {
    [ "$(in_ct iptables -S FORWARD | grep -c NFQUEUE)" = 1 ] &&
        [ "$(in_ct ip6tables -S FORWARD | grep -c NFQUEUE)" = 1 ]
}
check "the fragments add one NFQUEUE rule each" one_rule_each
check "the shipped rules permit nothing: 192.0.2.10 is dropped" dropped 192.0.2.10 203.0.113.25

# ExecReload=portgate reload: synchronous, it fails when the daemon refuses.
reload() { in_ct systemctl reload portgate; }
# The rules file is rewritten in place: it keeps its owner and mode.
write_rules() { in_ct sh -c 'cat >/etc/portgate/rules.yaml'; }

step "reload with a new permit"
pid1=$(show MainPID)
write_rules <<'RULES'
ports:
  - port: 25
sites:
  - site: Example County Courthouse
    contacts:
      site:      {name: Courthouse IT Manager, phone: "+1 303 555 0100", email: it@example.org}
      technical: {name: Courthouse Network Admin, phone: "+1 303 555 0101", email: noc@example.org}
      billing:   {name: Courthouse Finance Office, phone: "+1 303 555 0102", email: billing@example.org}
    permits:
      - {ip: 192.0.2.10, ports: [25], device: Mail relay}
      - {ip: 2001:db8:10::25, ports: [25], device: Exchange server}
RULES
check "systemctl reload succeeds" reload
generation2() {
    [ "$(show StatusText)" = "generation 2: 1 site, 2 permits, 0 blocks, 1 judged port" ] &&
        [ "$(show MainPID)" = "$pid1" ] && [ "$(show ActiveState)" = active ]
}
check "generation 2 in force, in the same process, active again (READY after RELOADING)" generation2
check "permitted 192.0.2.10 passes" passes 192.0.2.10 203.0.113.25
check "unpermitted 192.0.2.50 is dropped" dropped 192.0.2.50 203.0.113.25
check "permitted 2001:db8:10::25 passes" passes 2001:db8:10::25 2001:db8:203::25
check "unpermitted 2001:db8:10::50 is dropped" dropped 2001:db8:10::50 2001:db8:203::25
status_in_sandbox() {
    local out
    out=$(in_ct portgate status) && printf '%s\n' "$out" &&
        grep -q '^capabilities: CAP_NET_ADMIN$' <<<"$out" && grep -q 'generation 2' <<<"$out"
}
check "portgate status answers over /run/portgate/control.sock: CAP_NET_ADMIN, generation 2" status_in_sandbox

step "a broken edit is refused while the service stays up"
in_ct cp -p /etc/portgate/rules.yaml /root/good.yaml
in_ct sed -i 's/ports: \[25\], device: Mail relay/prots: [25], device: Mail relay/' /etc/portgate/rules.yaml
refused() { ! reload; }
check "systemctl reload fails" refused
problem_logged() {
    in_ct journalctl -u portgate -o cat --no-pager |
        grep -E 'rules.yaml:[0-9]+:[0-9]+: error: unknown key .prots.'
}
check "the journal names the problem and its position" problem_logged
check "still active, same process, generation 2 in force" generation2
check "permitted 192.0.2.10 still passes" passes 192.0.2.10 203.0.113.25
check "unpermitted 192.0.2.50 still dropped" dropped 192.0.2.50 203.0.113.25
in_ct cp -p /root/good.yaml /etc/portgate/rules.yaml

step "the watchdog restarts a hung daemon"
in_ct sh -ec '
    mkdir -p /run/systemd/system/portgate.service.d
    printf "[Service]\nWatchdogSec=2s\nTimeoutAbortSec=2s\nLimitCORE=0\n" \
        >/run/systemd/system/portgate.service.d/watchdog-test.conf
    systemctl daemon-reload
    systemctl restart portgate
'
sleep 5
pinged() { [ "$(show ActiveState)" = active ] && [ "$(show NRestarts)" = 0 ]; }
check "pinged: active after 2.5 watchdog periods, never restarted" pinged
hung=$(show MainPID)
in_ct systemctl kill --kill-who=main -s STOP portgate
restarted() {
    for _ in $(seq 150); do
        [ "$(show NRestarts)" = 1 ] && [ "$(show ActiveState)" = active ] &&
            [ "$(show MainPID)" != "$hung" ] && return 0
        sleep 0.1
    done
    return 1
}
check "a hung (stopped) daemon is killed by the watchdog and restarted" restarted
watchdog_logged() { in_ct journalctl -u portgate --no-pager | grep -i 'watchdog timeout'; }
check "the journal says why" watchdog_logged
check "after the restart, permitted 192.0.2.10 passes" passes 192.0.2.10 203.0.113.25
in_ct sh -ec 'rm -r /run/systemd/system/portgate.service.d; systemctl daemon-reload'

step "metrics for node_exporter, set up as the README says"
# The README's recipe, verbatim: the sandbox (ProtectSystem=strict) needs
# ReadWritePaths=, and the service's user write access to the directory.
in_ct sh -ec '
    mkdir -p /var/lib/prometheus/node-exporter
    setfacl -m u:portgate:rwx /var/lib/prometheus/node-exporter
    mkdir -p /etc/systemd/system/portgate.service.d
    printf "%s\n" "[Service]" "ExecStart=" \
        "ExecStart=/usr/sbin/portgate run --rules /etc/portgate/rules.yaml --queues 0 --metrics-file /var/lib/prometheus/node-exporter/portgate.prom" \
        "ReadWritePaths=/var/lib/prometheus/node-exporter" \
        >/etc/systemd/system/portgate.service.d/metrics.conf
    systemctl daemon-reload
    systemctl restart portgate
'
metrics_written() {
    local f=$root/var/lib/prometheus/node-exporter/portgate.prom
    for _ in $(seq 100); do [ -s "$f" ] && break; sleep 0.1; done
    [ "$(stat -c %a "$f")" = 644 ] && grep '^portgate_rules_generation 1$' "$f" &&
        grep '^portgate_rules_permits 2$' "$f"
}
check "the service writes its metrics file, 0644, with the rules in force" metrics_written
check "and judges as before: permitted 192.0.2.10 passes" passes 192.0.2.10 203.0.113.25
in_ct sh -ec '
    rm -r /etc/systemd/system/portgate.service.d
    systemctl daemon-reload
    systemctl restart portgate
'

step "while portgate is stopped: the fragments fail closed, or open with --queue-bypass"
in_ct systemctl stop portgate
check "fail closed: permitted 192.0.2.10 is dropped while portgate is stopped" \
    dropped 192.0.2.10 203.0.113.25
in_ct sh -ec '
    iptables -F FORWARD
    iptables-restore --noflush </usr/share/doc/portgate/examples/rules.v4.queue-bypass
'
check "--queue-bypass: unpermitted 192.0.2.50 passes while portgate is stopped" \
    passes 192.0.2.50 203.0.113.25
in_ct systemctl start portgate
check "--queue-bypass, portgate started again: 192.0.2.50 is dropped" dropped 192.0.2.50 203.0.113.25
check "and 192.0.2.10 passes" passes 192.0.2.10 203.0.113.25

step "power off the container"
kill -TERM "$nspawn_pid"
for _ in $(seq 150); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$nspawn_pid" 2>/dev/null; then
    bad "the container powers off within 30 s"
else
    wait "$nspawn_pid" || true
    nspawn_pid=
    ok "the container powered off"
fi
