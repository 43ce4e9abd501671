#!/usr/bin/env bash
# Crash injection, short: scripts/dev/kill_test.sh with 3 rounds of SIGKILL at
# random moments of a tiny training run, --resume after each; the run must
# end equal (metrics, analyses, best.json, weights) to an uninterrupted one.
# The long version: scripts/dev/kill_test.sh 15 (or more).
# usage: kill9.sh METALM_BIN SOURCE_DIR
set -u
bin=$1 src=$2
source "$src/tests/cli/lib/harness.sh"
check kill-9-and-resume 0 'survived 3/3 rounds .* equal to the uninterrupted run' -- \
  env METALM_BIN="$bin" bash "$src/scripts/dev/kill_test.sh" 3
finish
