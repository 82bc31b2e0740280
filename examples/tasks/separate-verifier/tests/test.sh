#!/bin/bash
# Runs in the separate verifier container: only the artifacts are there, not the agent's container.
echo "verifier container: $(hostname) as $(id -un)"
echo "/app:"; ls -A /app
echo "/logs/artifacts:"; ls -A /logs/artifacts 2>&1
echo "/tests:"; ls -A /tests
ok=0
[ "$(tr -d '[:space:]' < /app/answer.txt 2>/dev/null)" = "42" ] && ok=$((ok+1))
[ "$(tr -d '[:space:]' < /logs/artifacts/status.txt 2>/dev/null)" = "done" ] && ok=$((ok+1))
if [ $ok -eq 2 ]; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi
