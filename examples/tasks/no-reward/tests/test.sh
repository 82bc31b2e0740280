#!/bin/bash
echo "verifier ran but wrote no reward"
exit 3
