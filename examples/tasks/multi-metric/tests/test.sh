#!/bin/bash
# Several reward keys in reward.json: an overall reward plus the number of checks passed.
passed=0
[ "$(tr -d '[:space:]' < /app/sum.txt 2>/dev/null)" = "5050" ] && passed=$((passed+1))
[ "$(tr -d '[:space:]' < /app/product.txt 2>/dev/null)" = "120" ] && passed=$((passed+1))
reward=0.0; [ $passed -eq 2 ] && reward=1.0
echo "checks passed: $passed/2"
printf '{"reward": %s, "checks_passed": %d}\n' "$reward" "$passed" > /logs/verifier/reward.json
