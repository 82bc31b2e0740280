#!/usr/bin/env bash
# A second Docker daemon on this machine, for the tests of the pool of Docker hosts
# (crates/eval/tests/suite/pool.rs): `start` starts it (when it does not already answer) and
# loads the base image into it (when it is missing there); `stop` stops the daemon whose pid
# is in its pidfile, and nothing else.
#
# It has its own data root, exec root (so its own managed containerd), pidfile and socket, and,
# like the first one, no bridge network and no iptables rules (none may be made here).
# Idempotent and fast when the daemon already answers and holds the image.
set -euo pipefail

SOCK=${AUTOAGENT_DOCKERD2_SOCK:-/run/autoagent-dockerd2.sock}
DATA_ROOT=${AUTOAGENT_DOCKERD2_DATA_ROOT:-/var/lib/autoagent-dockerd2}
EXEC_ROOT=${AUTOAGENT_DOCKERD2_EXEC_ROOT:-/run/autoagent-dockerd2}
PIDFILE=${AUTOAGENT_DOCKERD2_PIDFILE:-/run/autoagent-dockerd2.pid}
LOG=${AUTOAGENT_DOCKERD2_LOG:-/var/log/autoagent-dockerd2.log}
BASE_IMAGE=${AUTOAGENT_BASE_IMAGE:-autoagent/debian:bookworm}
HOST="unix://$SOCK"

answers() { docker -H "$HOST" info >/dev/null 2>&1; }

start() {
  if ! answers; then
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "second-dockerd: pid $(cat "$PIDFILE") runs but $HOST does not answer yet; waiting"
    else
      echo "second-dockerd: starting dockerd on $HOST"
      mkdir -p "$DATA_ROOT" "$EXEC_ROOT" "$(dirname "$LOG")"
      # A stale pidfile (a daemon killed without cleanup) makes dockerd refuse to start.
      rm -f "$PIDFILE"
      nohup dockerd \
        --data-root "$DATA_ROOT" \
        --exec-root "$EXEC_ROOT" \
        --pidfile "$PIDFILE" \
        -H "$HOST" \
        --bridge=none --iptables=false \
        --containerd-namespace autoagent-dockerd2 \
        --containerd-plugins-namespace autoagent-dockerd2-plugins \
        >"$LOG" 2>&1 &
    fi
    for _ in $(seq 1 60); do
      answers && break
      sleep 1
    done
    answers || { echo "second-dockerd: dockerd did not answer on $HOST; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
  fi
  if ! docker -H "$HOST" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "second-dockerd: loading $BASE_IMAGE into it"
    docker save "$BASE_IMAGE" | docker -H "$HOST" load >/dev/null
  fi
  echo "second-dockerd: $HOST answers (docker $(docker -H "$HOST" version --format '{{.Server.Version}}')), $BASE_IMAGE present"
}

stop() {
  if [ ! -f "$PIDFILE" ]; then
    echo "second-dockerd: no pidfile $PIDFILE; nothing to stop"
    return 0
  fi
  pid=$(cat "$PIDFILE")
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "second-dockerd: pid $pid from $PIDFILE is not running"
    rm -f "$PIDFILE"
    return 0
  fi
  echo "second-dockerd: stopping pid $pid"
  kill "$pid"
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "second-dockerd: pid $pid did not stop in 30 s" >&2
    exit 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
