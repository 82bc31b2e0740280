#!/bin/bash
# Runs in the working directory (/app) before this step's agent, as the agent's user.
echo two > /app/suffix.txt
