#!/bin/sh
# End-to-end check of deploy/compose.yaml against a real Docker daemon (README: Deploying,
# "What was verified"): build the image, bring node1-3 up, let `create` make the group,
# write and read by host name from a client container, rerun create (exits 0, "exists
# already"), SIGKILL the leader's node process (the container restarts on failure and
# rejoins while 3000 writes go on), and show that a config error (exit 2) is retried at
# most 5 times. Tears everything down (volumes too) at the end, also on failure.
#   BASE=...   a python:3.11-slim stand-in where Docker Hub cannot be reached
#   COMPOSE=.. the compose command (default: docker compose, else docker-compose)
# Needs a cookie in deploy/secrets/cookie owned by uid 10001, mode 0600 (made if missing
# when run as root).
set -eu
cd "$(dirname "$0")/.."
if [ -z "${COMPOSE:-}" ]; then
  if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
fi
P=zraftcheck
C="$COMPOSE -p $P -f deploy/compose.yaml"
if [ ! -f deploy/secrets/cookie ]; then
  python3 -c 'import secrets; print(secrets.token_hex(32))' > deploy/secrets/cookie
  chmod 600 deploy/secrets/cookie && chown 10001:10001 deploy/secrets/cookie
fi
cleanup() { $C down -v --remove-orphans >/dev/null 2>&1 || true; docker rm -f ${P}_bad >/dev/null 2>&1 || true; }
trap cleanup EXIT
step() { printf '== %s\n' "$*"; }

step "build (BASE=${BASE:-python:3.11-slim})"
DOCKER_BUILDKIT=1 docker build -q ${BASE:+--build-arg BASE="$BASE"} -f deploy/Dockerfile -t zraft:dev . >/dev/null
step "up"
$C up -d >/dev/null 2>&1
i=0; until [ "$(docker inspect -f '{{.State.Status}}' ${P}_create_1 2>/dev/null || docker inspect -f '{{.State.Status}}' ${P}-create-1)" = exited ]; do
  i=$((i + 1)); [ $i -lt 150 ] || { echo "create did not finish"; exit 1; }; sleep 1; done
$C logs --no-color create | grep -q "created: 3 peers" || { $C logs create; exit 1; }
step "created; client by host name"
[ "$($C run --rm --entrypoint zraft create write color red 2>/dev/null | tail -1)" = ok ]
[ "$($C run --rm --entrypoint zraft create read color 2>/dev/null | tail -1)" = red ]
step "create again: exists already, exit 0"
$C run --rm create 2>/dev/null | grep -q "exists already"
leader=$($C run --rm --entrypoint zraft create stat zraft@node2:7000 2>/dev/null | sed -n 's/^  leader: zraft@\(node[0-9]\):7000$/\1/p')
step "leader $leader: SIGKILL its node process during 3000 writes"
cat > /tmp/zraft-check-writes.py <<'PY'
import os
from zraft.client import api
from zraft.client.connection import ConnectionPool, resolve_cookie
pool, peers = ConnectionPool(resolve_cookie()), os.environ["ZRAFT_PEERS"].split(",")
light = api.light_session(peers, fail_timeout=1.0, election_timeout=0.5)
for i in range(3000):
    result, light = api.write(light, [f"k{i}", i], timeout=10.0, pool=pool)
    assert result == "ok", result
print("3000 writes ok, leader", light.leader)
PY
$C run --rm -v /tmp/zraft-check-writes.py:/tmp/w.py:ro --entrypoint python create /tmp/w.py > /tmp/zraft-check-writes.log 2>&1 &
writer=$!
sleep 3
cid=$($C ps -q "$leader")
pid=$(docker top "$cid" -eo pid,args | awk '$2 == "python" && /zraft.node/ {print $1}')
kill -9 "$pid"
wait "$writer"; tail -1 /tmp/zraft-check-writes.log
i=0; until [ "$(docker inspect -f '{{.State.Health.Status}}' "$cid")" = healthy ]; do
  i=$((i + 1)); [ $i -lt 90 ] || { echo "$leader did not come back"; exit 1; }; sleep 1; done
echo "$leader restarted $(docker inspect -f '{{.RestartCount}}' "$cid") time(s), healthy"
[ "$($C run --rm --entrypoint zraft create read k2999 2>/dev/null | tail -1)" = 2999 ]
step "a config error exits 2 and is retried at most 5 times"
printf '[node]\nlisten = "0.0.0.0:7000"\ncookie = "x"\n' > /tmp/zraft-check-bad.toml
chmod 644 /tmp/zraft-check-bad.toml
docker run -d --name ${P}_bad --restart on-failure:5 -v /tmp/zraft-check-bad.toml:/etc/zraft/node.toml:ro zraft:dev >/dev/null
i=0; until [ "$(docker inspect -f '{{.State.Status}}:{{.RestartCount}}' ${P}_bad)" = exited:5 ]; do
  i=$((i + 1)); [ $i -lt 60 ] || { docker inspect -f '{{.State.Status}} {{.RestartCount}}' ${P}_bad; exit 1; }; sleep 1; done
echo "exit $(docker inspect -f '{{.State.ExitCode}}' ${P}_bad) after 5 restarts: $(docker logs ${P}_bad 2>&1 | tail -1)"
step "all checks passed"
