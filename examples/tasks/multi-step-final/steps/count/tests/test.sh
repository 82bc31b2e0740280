#!/bin/bash
# Two reward keys: with "final" both become the trial's rewards unchanged.
ok=0
[ "$(tr -d '[:space:]' < /app/count.txt 2>/dev/null)" = "3" ] && ok=1
echo "count.txt: $(cat /app/count.txt 2>/dev/null)"
printf '{"reward": %d, "count_ok": %d}\n' "$ok" "$ok" > /logs/verifier/reward.json
