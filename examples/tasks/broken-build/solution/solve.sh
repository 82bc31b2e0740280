#!/bin/bash
touch /app/x.txt
