#!/bin/bash
echo 42 > /app/answer.txt
mkdir -p /logs/artifacts
echo done > /logs/artifacts/status.txt
