#!/bin/bash
cat /app/data.txt
