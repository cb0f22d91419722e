#!/bin/bash
# Runs the shipped unit under a real systemd on a machine whose PID 1 is not systemd (a
# container, CI): a systemd boots as PID 1 of throwaway namespaces (pid, mount, network,
# cgroup …) and starts etcd and esi-monitor.service with its whole sandbox, as installed
# (Type=notify, watchdog, seccomp filter …). It checks that the service becomes active,
# answers /healthz, polls an SNMP agent over UDP, survives `systemctl reload` and stops.
#
#   packaging/check-under-systemd.sh [--no-notify] [BINARY]
#
# (root; BINARY: target/release/esi-monitor). --no-notify checks the sandbox of a binary
# that does not send READY=1 yet: Type=simple, no watchdog.
#
# Safety: inside, / is read-only and /tmp, /var/tmp, /var/log, /var/lib/systemd and /run are
# empty tmpfs, /etc is a copy: the booting systemd (systemd-tmpfiles cleans /tmp at boot!)
# cannot touch the host. Its cgroups live under /sys/fs/cgroup/unified/esi-check, removed at
# the end. Needs etcd, etcdctl, snmpd and curl (make unit-check installs them: scripts/deps).
set -euo pipefail
cd "$(dirname "$0")/.."
DROPIN='[Unit]\nAfter=etcd-check.service\n[Service]\nTimeoutStartSec=20s\n'
if [ "${1:-}" = --no-notify ]; then DROPIN="${DROPIN}Type=simple\nWatchdogSec=0\n"; shift; fi
BINARY=$(realpath "${1:-${CARGO_TARGET_DIR:-target}/release/esi-monitor}")
W=$(realpath -m "${CARGO_TARGET_DIR:-target}/systemd-check")
CG=/sys/fs/cgroup/unified/esi-check
[ "$(id -u)" = 0 ] || { echo "needs root"; exit 1; }
[ -x "$BINARY" ] || { echo "no $BINARY: make release first"; exit 1; }
for tool in etcd etcdctl /usr/sbin/snmpd curl unshare nsenter; do
    command -v "$tool" >/dev/null || { echo "$tool is missing"; exit 1; }
done

rm -rf "$W" && mkdir -p "$W/units/esi-monitor.service.d"
cp -a /etc "$W/etc"
useradd --prefix "$W" --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin esi-monitor
install -D -m 0640 -o root -g "$(awk -F: '$1 == "esi-monitor" {print $3}' "$W/etc/group")" \
    packaging/config.yaml "$W/etc/esi-monitor/config.yaml"
ln -sf /dev/null "$W/etc/systemd/system/systemd-tmpfiles-setup.service"
# Inside, $W is seen at /mnt (bound there before /tmp and the others become empty tmpfs,
# so a checkout under /tmp works too), with its own copy of the binary.
cp "$BINARY" "$W/esi-monitor"
sed "s|^ExecStart=/usr/bin/esi-monitor |ExecStart=/mnt/esi-monitor |" packaging/esi-monitor.service \
    > "$W/units/esi-monitor.service"
printf "$DROPIN" > "$W/units/esi-monitor.service.d/check.conf"
printf '[Service]\nExecStart=/usr/bin/etcd --data-dir /run/etcd-check --listen-client-urls %s --advertise-client-urls %s\n' \
    http://127.0.0.1:2379 http://127.0.0.1:2379 > "$W/units/etcd-check.service"
printf '[Unit]\nWants=etcd-check.service esi-monitor.service\n' > "$W/units/esi-check.target"
printf 'rocommunity public 127.0.0.1\n' > "$W/snmpd.conf"
cat > "$W/boot.sh" <<EOF
set -e
mount --make-rprivate /
mount --bind "$W" /mnt
for d in /tmp /var/tmp /var/log /var/lib/systemd /run; do mount -t tmpfs tmpfs \$d; done
mount --bind /mnt/etc /etc
mkdir -p /run/systemd/system && cp -r /mnt/units/* /run/systemd/system/
mount -t tmpfs tmpfs /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -o remount,bind,ro /
ip link set lo up
export container=esi-check
exec /lib/systemd/systemd --system --unit=esi-check.target
EOF

mkdir -p "$CG"
sh -c "echo \$\$ > $CG/cgroup.procs; exec unshare --pid --fork --mount --net --uts --ipc --cgroup --mount-proc sh $W/boot.sh" \
    > "$W/boot.log" 2>&1 &
UNSHARE=$!
PID1=""
cleanup() {
    if [ -n "$PID1" ] && kill -0 "$PID1" 2>/dev/null; then
        in_ns systemctl poweroff >/dev/null 2>&1 || true
        for _ in $(seq 30); do kill -0 "$PID1" 2>/dev/null || break; sleep 1; done
        kill -KILL "$PID1" 2>/dev/null || true
    fi
    wait "$UNSHARE" 2>/dev/null || true
    find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null || true
}
trap cleanup EXIT
in_ns() { timeout 30 nsenter -t "$PID1" -m -p -n -u -i "$@"; }
# Waits up to $1 seconds for the command after it to succeed.
wait_for() { local n=$1; shift; for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done; return 1; }
fail() { echo "FAILED: $*"; in_ns journalctl -u esi-monitor --no-pager | tail -20; exit 1; }

wait_for 10 pgrep -P "$UNSHARE" || fail "systemd did not start (see $W/boot.log)"
PID1=$(pgrep -P "$UNSHARE")
wait_for 30 in_ns sh -c 'systemctl is-system-running | grep -qE "running|degraded"' || fail "systemd did not boot"
wait_for 30 in_ns systemctl is-active esi-monitor || fail "esi-monitor did not become active"
echo "ok: esi-monitor is active under systemd $(in_ns systemctl show -p Version --value)"
in_ns curl -sf http://127.0.0.1:9464/healthz >/dev/null || fail "no /healthz"
echo "ok: /healthz answers"

# A template and a job polling the namespace's own snmpd for its loopback interface.
in_ns /usr/sbin/snmpd -C -c /mnt/snmpd.conf -p /run/snmpd.pid -Lf /run/snmpd.log udp:127.0.0.1:16100
template='port:\\n  type: physical_port\\n  community_name: public\\n  device_ip: 127.0.0.1\\n  port: 16100\\n  name: lo\\n'
body="{\\\"handler\\\": \\\"monitoring_worker\\\", \\\"id\\\": \\\"check_monitoring\\\", \\\"template_file\\\": \\\"$template\\\"}"
in_ns etcdctl put /config/v2.0/heat_templates/check_monitoring "{\"body\": \"$body\", \"version\": 1}" >/dev/null
id=create:monitoring_worker:check:c1:1:t
in_ns etcdctl put "/jobs/all/$id" "[\"monitoring_worker\", {\"id\": \"$id\", \"job_name\": \"check:c1:1\",
  \"handler\": \"monitoring_worker\", \"action\": \"create\", \"resource_type\": \"check\", \"resource_id\": \"c1\",
  \"version\": 1, \"is_first\": true, \"is_last\": true, \"on_failure\": \"fail\", \"dependency\": [],
  \"params\": [], \"resource_input\": {\"tenant_id\": \"t\"}}, 0]" >/dev/null
up() { in_ns etcdctl get /monitoring/v2.0/checks/c1 --print-value-only | grep -q '"port":"UP"'; }
wait_for 30 up || fail "the SNMP port was not reported UP"
echo "ok: a job ran and its SNMP port was polled UP"

main_pid=$(in_ns systemctl show -p MainPID --value esi-monitor)
in_ns systemctl reload esi-monitor || fail "systemctl reload"
sleep 2 # a SIGHUP that the service does not handle would end it at once
[ "$(in_ns systemctl show -p MainPID --value esi-monitor)" = "$main_pid" ] || fail "reload restarted the service"
in_ns systemctl is-active esi-monitor >/dev/null || fail "not active after reload"
echo "ok: reload (SIGHUP) keeps the service running"

in_ns systemctl stop esi-monitor
[ "$(in_ns systemctl show -p Result --value esi-monitor)" = success ] || fail "stop"
echo "ok: stopped cleanly; all checks passed"
