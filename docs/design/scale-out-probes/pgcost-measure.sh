#!/bin/bash
# Clean debug builds of the three scratch packages, each under the heavy lock, timed.
set -u
out=/tmp/pgcost/results.txt
for round in 1 2; do
  for p in base pg libpq; do
    cd /tmp/pgcost/$p && rm -rf .build/debug .build/x86_64-unknown-linux-gnu
    flock /tmp/fabrikam-heavy.lock /usr/bin/time -f "$p round$round wall=%e user=%U sys=%S maxrss_kb=%M" -a -o $out swift build >/tmp/pgcost/$p.build$round.log 2>&1
    echo "$p round$round rc=$?" >> $out
  done
done
echo done >> $out
