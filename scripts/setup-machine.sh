#!/usr/bin/env bash
# Installs and starts what the test suite needs on a fresh Debian machine:
# the Docker engine (started with no bridge network), bubblewrap, debootstrap, chromium and
# chromium-driver (the dashboard's browser tests),
# and the local base image `autoagent/debian:bookworm` that example tasks build FROM.
# Idempotent: every step checks before it acts, so a warm machine spends seconds here.
set -euo pipefail

BASE_IMAGE=${AUTOAGENT_BASE_IMAGE:-autoagent/debian:bookworm}
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v git >/dev/null 2>&1 || need+=(git)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# A daemon that already answers is used as is; otherwise start one without a bridge
# network (none may be created on these machines) and without touching iptables.
if ! docker info >/dev/null 2>&1; then
  echo "setup: starting dockerd"
  mkdir -p /var/log
  nohup dockerd --bridge=none --iptables=false >/var/log/autoagent-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start; see /var/log/autoagent-dockerd.log" >&2; tail -20 /var/log/autoagent-dockerd.log >&2; exit 1; }
fi

# No image registry is reachable: the base image is made from Debian packages.
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "setup: building base image $BASE_IMAGE with debootstrap (a few minutes, once per machine)"
  root=$(mktemp -d /tmp/autoagent-rootfs.XXXXXX)
  debootstrap --variant=minbase --include=python3 bookworm "$root" http://deb.debian.org/debian >/tmp/autoagent-debootstrap.log 2>&1 \
    || { echo "setup: debootstrap failed; see /tmp/autoagent-debootstrap.log" >&2; tail -20 /tmp/autoagent-debootstrap.log >&2; exit 1; }
  tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
fi
echo "setup: docker $(docker version --format '{{.Server.Version}}'), base image $BASE_IMAGE ready"
