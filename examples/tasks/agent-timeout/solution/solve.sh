#!/bin/bash
# Too slow on purpose: the 3 s agent timeout ends it, and the verifier still runs.
sleep 20
touch /app/done.txt
