#!/bin/bash
# The verifier runs in the workdir too (Harbor passes no cwd of its own).
echo "cwd: $(pwd)"
if [ "$(pwd)" = /srv/project ] && [ "$(cat /srv/project/status.txt 2>/dev/null)" = ready ]; then echo 1 > /logs/verifier/reward.txt; else echo 0 > /logs/verifier/reward.txt; fi
