#!/usr/bin/env bash
# 200 trials at once on this machine: the agent is a sleep (the oracle's solve.sh sleeps), so the
# Docker daemon is the bottleneck, not the CPU. Prints the orchestrator's peak RSS per concurrent
# trial, trials/s, and the ratio to a bare-docker loop doing the least a trial needs (run + 2
# exec + rm) at the same concurrency; fails if a trial is lost or mis-scored.
# Needs a Docker daemon and the base image (scripts/setup-machine.sh). Env: C (default 200),
# SLEEP (seconds the agent sleeps, default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
C=${C:-200}
SLEEP=${SLEEP:-5}
command -v /usr/bin/time >/dev/null 2>&1 || apt-get install -y -qq time >/dev/null
BASE=${AUTOAGENT_BASE_IMAGE:-autoagent/debian:bookworm}
work=$(mktemp -d /tmp/autoagent-scale.XXXXXX)
trap 'rm -rf "$work"' EXIT

cargo build -q --release -p autoagent-cli
AA=$(pwd)/target/release/autoagent

t="$work/tasks/sleepy"
mkdir -p "$t/environment" "$t/solution" "$t/tests"
printf 'FROM %s\nWORKDIR /app\n' "$BASE" > "$t/environment/Dockerfile"
echo "Create /app/ok." > "$t/instruction.md"
printf '[agent]\ntimeout_sec = 300.0\n[verifier]\ntimeout_sec = 300.0\n[environment]\nbuild_timeout_sec = 600.0\n' > "$t/task.toml"
printf '#!/bin/bash\nsleep %s\ntouch /app/ok\n' "$SLEEP" > "$t/solution/solve.sh"
printf '#!/bin/bash\n[ -f /app/ok ] && echo 1 > /logs/verifier/reward.txt || echo 0 > /logs/verifier/reward.txt\n' > "$t/tests/test.sh"
chmod +x "$t/solution/solve.sh" "$t/tests/test.sh"

# Warm the image.
"$AA" eval -p "$t" -o "$work/jobs" --job-name warm >/dev/null

now() { date +%s.%N; }

# The bare loop: C trials at once, each run + exec (the sleep) + exec (the test); then the
# containers are removed 20 at a time by two workers (on dockerd 20.10, 200 concurrent
# `docker rm -f` of `--init` containers wedged the daemon for minutes here).
mkdir -p "$work/bare"
bare_one() {
  c=$(docker run -d --init --network none -w /app --label autoagent.bench=scale "$BASE" sh -c 'sleep infinity')
  docker exec "$c" bash -c "sleep $SLEEP; touch /app/ok" >/dev/null
  docker exec "$c" bash -c '[ -f /app/ok ] && echo 1' > "$work/bare/$1"
}
export -f bare_one; export BASE SLEEP work
s=$(now)
seq 1 "$C" | xargs -P "$C" -I{} bash -c 'bare_one {}'
docker ps -aq --filter label=autoagent.bench=scale | xargs -r -n 20 -P 2 docker rm -f >/dev/null
e=$(now)
bare_wall=$(awk -v a="$s" -v b="$e" 'BEGIN{printf "%.2f", b-a}')
bare_ok=$(cat "$work"/bare/* 2>/dev/null | grep -c '^1$' || true)

# autoagent: one job of C trials at once.
s=$(now)
rss=$(/usr/bin/time -f %M "$AA" eval -p "$t" -k "$C" -n "$C" -o "$work/jobs" --job-name scale 2>&1 >/dev/null | tail -1)
e=$(now)
aa_wall=$(awk -v a="$s" -v b="$e" 'BEGIN{printf "%.2f", b-a}')
rss1=$(/usr/bin/time -f %M "$AA" eval -p "$t" -o "$work/jobs" --job-name one 2>&1 >/dev/null | tail -1)
done_n=$(ls "$work"/jobs/scale/*/result.json | wc -l)
ok_n=$(grep -l '"reward": 1' "$work"/jobs/scale/*/result.json | wc -l)
errs=$(grep -L '"exception_info": null' "$work"/jobs/scale/*/result.json | wc -l)

echo "concurrency: $C trials of a task whose agent sleeps ${SLEEP} s"
echo "bare docker (run + 2 exec + rm, $C at once): ${bare_wall} s wall, $(awk -v w="$bare_wall" -v c="$C" 'BEGIN{printf "%.2f", c/w}') trials/s, $bare_ok/$C scored 1"
echo "autoagent eval -k $C -n $C            : ${aa_wall} s wall, $(awk -v w="$aa_wall" -v c="$C" 'BEGIN{printf "%.2f", c/w}') trials/s, $ok_n/$C scored 1, $done_n finished, $errs with an exception"
echo "ratio autoagent/bare wall            : $(awk -v a="$aa_wall" -v b="$bare_wall" 'BEGIN{printf "%.2f", a/b}')"
echo "orchestrator peak RSS                : ${rss1} KiB with 1 trial, ${rss} KiB with $C at once: $(awk -v a="$rss1" -v b="$rss" -v m="$C" 'BEGIN{printf "%.3f", (b-a)/(m-1)/1024}') MiB per concurrent trial"
job_id=$(sed -n 's/^  "id": "\(.*\)",$/\1/p' "$work/jobs/scale/result.json" | head -1)
docker ps -aq --filter "label=autoagent.job=$job_id" | wc -l | xargs -I{} echo "containers left behind by the job: {}"
[ "$done_n" -eq "$C" ] && [ "$ok_n" -eq "$C" ] || { echo "bench-scale: a trial was lost or mis-scored" >&2; exit 1; }
