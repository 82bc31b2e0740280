#!/bin/bash
source /tests/expect.sh
expect_notes one two
