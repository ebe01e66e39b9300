#!/bin/sh
# The systemd unit under a real systemd, as PID 1 of a systemd-nspawn container (root;
# Debian's debootstrap and systemd-container): installs zraft in /opt/zraft from wheels
# built here, the unit, the sysusers file, a cookie and two node configs from
# deploy/systemd/node.toml (on 127.0.0.1:7000 and :7010 inside the container's own
# network namespace), boots, then checks: both nodes run as user zraft with the cookie as
# a credential; `zraft create --wait` makes the group; SIGKILL of a node is restarted
# (NRestarts=1) and it serves again; a config error (exit 2) is not restarted (failed,
# NRestarts=0); `systemctl stop` is exit 0 (inactive, not failed). Powers the container
# off at the end, also on failure.
#   ROOTFS=DIR   a bookworm tree to reuse (default: made with debootstrap in a temp dir)
set -eu
cd "$(dirname "$0")/.."
ROOTFS="${ROOTFS:-$(mktemp -d)/rootfs}"
if [ ! -x "$ROOTFS/lib/systemd/systemd" ]; then
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,python3,python3-venv,ca-certificates \
    bookworm "$ROOTFS" http://deb.debian.org/debian >/dev/null
fi
R="$ROOTFS"
step() { printf '== %s\n' "$*"; }
step "install zraft and the unit into $R"
wheels=$(mktemp -d)
python3 -m pip wheel -q . -w "$wheels"
rm -rf "$R/wheels" "$R/var/lib/zraft" "$R/var/log/zraft"
cp -r "$wheels" "$R/wheels"
[ -x "$R/opt/zraft/bin/python" ] || chroot "$R" python3 -m venv /opt/zraft
chroot "$R" /opt/zraft/bin/pip install -q --force-reinstall --no-index --find-links /wheels zraft
mkdir -p "$R/etc/zraft" "$R/etc/sysusers.d" "$R/etc/systemd/system/multi-user.target.wants"
cp deploy/systemd/zraft-node@.service "$R/etc/systemd/system/"
cp deploy/systemd/zraft.sysusers "$R/etc/sysusers.d/zraft.conf"
python3 -c 'import secrets; print(secrets.token_hex(32))' > "$R/etc/zraft/cookie"
chmod 600 "$R/etc/zraft/cookie"
sed 's|node1.example.com:7000|127.0.0.1:7000|' deploy/systemd/node.toml > "$R/etc/zraft/node1.toml"
sed 's|node1.example.com:7000|127.0.0.1:7010|; s|/node1|/node2|g; s|= 7001|= 7011|' \
  deploy/systemd/node.toml > "$R/etc/zraft/node2.toml"
sed 's|node1.example.com:7000|0.0.0.0:7020|; s|/node1|/bad|g; s|= 7001|= 7021|' \
  deploy/systemd/node.toml > "$R/etc/zraft/bad.toml"
for n in node1 node2; do
  ln -sf /etc/systemd/system/zraft-node@.service \
    "$R/etc/systemd/system/multi-user.target.wants/zraft-node@$n.service"
done
step "boot"
systemd-nspawn -q -D "$R" --boot --private-network --machine "zraftcheck$$" --register=no \
  --keep-unit >/dev/null 2>&1 &
nspawn=$!
init=""
i=0; while [ -z "$init" ]; do
  i=$((i + 1)); [ $i -lt 60 ] || { echo "container did not start"; exit 1; }
  sleep 1; init=$(pgrep -P "$nspawn" | head -1 || true); done
E="nsenter -t $init -a"
Z="/opt/zraft/bin/zraft"
PEERS=zraft@127.0.0.1:7000,zraft@127.0.0.1:7010
cleanup() { $E systemctl poweroff >/dev/null 2>&1 || kill "$nspawn" 2>/dev/null || true; wait "$nspawn" 2>/dev/null || true; }
trap cleanup EXIT
show() { $E systemctl show "$1" -p "$2" --value; }
i=0; until [ "$(show zraft-node@node2 ActiveState 2>/dev/null)" = active ] && \
           [ "$(show zraft-node@node1 ActiveState 2>/dev/null)" = active ]; do
  i=$((i + 1)); [ $i -lt 60 ] || { echo "units did not start"; exit 1; }; sleep 1; done
[ "$(show zraft-node@node1 User)" = zraft ]
step "create, write, read"
$E $Z create --peers "$PEERS" --cookie-file /etc/zraft/cookie --wait 30 | head -1
[ "$($E $Z write color red --peers "$PEERS" --cookie-file /etc/zraft/cookie)" = ok ]
step "SIGKILL node1: restarted"
pid=$(show zraft-node@node1 MainPID)
$E sh -c "kill -9 $pid"
i=0; until [ "$(show zraft-node@node1 NRestarts)" = 1 ] && [ "$(show zraft-node@node1 ActiveState)" = active ]; do
  i=$((i + 1)); [ $i -lt 30 ] || { echo "node1 was not restarted"; exit 1; }; sleep 1; done
[ "$($E $Z read color --peers "$PEERS" --cookie-file /etc/zraft/cookie --timeout 10)" = red ]
echo "node1 restarted once, serving"
step "a config error (exit 2): not restarted"
$E systemctl start zraft-node@bad || true
i=0; until [ "$(show zraft-node@bad ActiveState)" = failed ]; do
  i=$((i + 1)); [ $i -lt 30 ] || { echo "bad unit did not fail"; exit 1; }; sleep 1; done
sleep 5  # RestartSec=2s: a restart, if there were one, would have happened by now
[ "$(show zraft-node@bad NRestarts)" = 0 ] && [ "$(show zraft-node@bad ExecMainStatus)" = 2 ]
echo "exit 2, failed, 0 restarts: $($E journalctl -u zraft-node@bad -o cat --no-pager | grep '^zraft node:' | tail -1)"
step "systemctl stop: exit 0, inactive"
$E systemctl stop zraft-node@node2
[ "$(show zraft-node@node2 ActiveState)" = inactive ] && [ "$(show zraft-node@node2 ExecMainStatus)" = 0 ]
echo "exposure: $($E systemd-analyze security zraft-node@node1 --no-pager 2>&1 | tail -1)"
step "all checks passed"
