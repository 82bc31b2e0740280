#!/usr/bin/env bash
# Runner overhead per trial: autoagent's oracle on N trivial tasks at -n 1 and -n 8, against a
# bare loop over the same image that does the least a trial needs: `docker run` + two
# `docker exec` (solution, test) + `docker rm -f`. Prints seconds per trial and the ratios.
# Also the orchestrator's peak memory (max RSS) with 1 and with M trials running at once, and
# the increment per concurrent trial.
# Needs a Docker daemon and the base image (scripts/setup-machine.sh). Env: N (default 20), M (32).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
M=${M:-32}
command -v /usr/bin/time >/dev/null 2>&1 || apt-get install -y -qq time >/dev/null
BASE=${AUTOAGENT_BASE_IMAGE:-autoagent/debian:bookworm}
work=$(mktemp -d /tmp/autoagent-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

cargo build -q --release -p autoagent-cli
AA=$(pwd)/target/release/autoagent

for i in $(seq -w 1 "$(( N > M ? N : M ))"); do
  t="$work/tasks/trivial-$i"
  mkdir -p "$t/environment" "$t/solution" "$t/tests"
  printf 'FROM %s\nWORKDIR /app\n' "$BASE" > "$t/environment/Dockerfile"
  echo "Create /app/ok." > "$t/instruction.md"
  printf '[agent]\ntimeout_sec = 60.0\n[verifier]\ntimeout_sec = 60.0\n' > "$t/task.toml"
  printf '#!/bin/bash\ntouch /app/ok\n' > "$t/solution/solve.sh"
  printf '#!/bin/bash\n[ -f /app/ok ] && echo 1 > /logs/verifier/reward.txt || echo 0 > /logs/verifier/reward.txt\n' > "$t/tests/test.sh"
  chmod +x "$t/solution/solve.sh" "$t/tests/test.sh"
done

# Warm the image cache (all tasks share one environment, so one build).
"$AA" eval -p "$work/tasks" -i trivial-01 -o "$work/jobs" --job-name warm >/dev/null
# The task image is the base image plus `WORKDIR /app`; the bare loop uses the base with -w.
IMG=$BASE

now() { date +%s.%N; }
per() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN{printf "%.3f", (b-a)/n}'; }

s=$(now)
for i in $(seq 1 "$N"); do
  c=$(docker run -d --init --network none -w /app -v "$work/logs:/logs/verifier" "$IMG" sh -c 'sleep infinity')
  docker exec "$c" bash -c 'touch /app/ok' >/dev/null
  docker exec "$c" bash -c '[ -f /app/ok ] && echo 1 > /logs/verifier/reward.txt' >/dev/null
  docker rm -f "$c" >/dev/null
done
e=$(now); bare=$(per "$s" "$e")

only_n() { local n=$1; seq -w 1 "$(( N > M ? N : M ))" | head -n "$n" | sed 's/^/-i trivial-/'; }
s=$(now); "$AA" eval -p "$work/tasks" $(only_n "$N") -n 1 -o "$work/jobs" --job-name n1 >/dev/null; e=$(now); n1=$(per "$s" "$e")
s=$(now); "$AA" eval -p "$work/tasks" $(only_n "$N") -n 8 -o "$work/jobs" --job-name n8 >/dev/null; e=$(now); n8=$(per "$s" "$e")
rss1=$(/usr/bin/time -f %M "$AA" eval -p "$work/tasks" -i trivial-01 -n 1 -o "$work/jobs" --job-name mem1 2>&1 >/dev/null | tail -1)
rssm=$(/usr/bin/time -f %M "$AA" eval -p "$work/tasks" $(only_n "$M") -n "$M" -o "$work/jobs" --job-name memm 2>&1 >/dev/null | tail -1)
grep -q '"mean": 1.0' "$work/jobs/n1/result.json" || { echo "bench: the oracle did not score 1.0" >&2; exit 1; }

echo "trials: $N trivial tasks, image $IMG"
echo "bare docker run + 2 exec + rm -f : ${bare} s/trial"
echo "autoagent eval -n 1               : ${n1} s/trial  (ratio to bare: $(awk -v a="$n1" -v b="$bare" 'BEGIN{printf "%.2f", a/b}'))"
echo "autoagent eval -n 8               : ${n8} s/trial wall  (ratio to bare: $(awk -v a="$n8" -v b="$bare" 'BEGIN{printf "%.2f", a/b}'))"
echo "peak memory (max RSS)            : ${rss1} KiB with 1 trial, ${rssm} KiB with $M at once: $(awk -v a="$rss1" -v b="$rssm" -v m="$M" 'BEGIN{printf "%.2f", (b-a)/(m-1)/1024}') MiB per concurrent trial"
echo "Harbor 0.25 measured here: about 13.5 s/trial at -n 1 (harbor-peer/README.md); ratio Harbor/autoagent -n 1: $(awk -v a="$n1" 'BEGIN{printf "%.1f", 13.5/a}')"
