#!/usr/bin/env bash
# After `make test`: repeats every failed test and its recorded issues at the end of the output,
# then exits with the test run's status. A CI log is often kept only by its tail, and a failure
# printed minutes before the end of a 400-second run would otherwise be lost from it.
#   tools/failed-tests.sh LOG STATUS
log=$1 status=$2
if [[ $status -ne 0 ]]; then
  echo "== what failed (from $log) =="
  # swift-testing marks a failed test, suite and recorded issue with ✘; the lines after an
  # issue (↳) carry its comment.
  grep -E -A3 '✘|: error:|Fatal error|Segmentation fault|signal [0-9]+|Program crashed|crashed:$' "$log" | grep -v -E '^(◇|✔)' | head -120
fi
exit "$status"
