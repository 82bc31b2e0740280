#!/bin/bash
s=0; [ -f /app/a.txt ] && s=$((s+1)); [ -f /app/b.txt ] && s=$((s+1))
awk -v s=$s 'BEGIN{print s/2}' > /logs/verifier/reward.txt
