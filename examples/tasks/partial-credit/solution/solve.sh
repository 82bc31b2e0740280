#!/bin/bash
# The reference solution is deliberately half right: the grader gives 0.5.
touch /app/a.txt
