#!/bin/bash
# Every figure of issue 10's targets in one run, one benchmark after the other, on the
# same machine, each printing its own table/JSON; the log is what bench/RESULTS.md's
# one-run table is built from.
#   bench/issue10.sh [out-dir]          (needs the bench extra: scripts/install test,bench)
# About 15 minutes on a quiet 2-core machine. Run nothing else meanwhile.
set -u
cd "$(dirname "$0")/.."
out=${1:-/tmp/offload-issue10-$(date -u +%Y%m%dT%H%M)}
mkdir -p "$out"
py=.venv/bin/python
step() {
  local name=$1; shift
  echo "== $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg) :: $name :: $*" | tee -a "$out/log"
  "$@" > "$out/$name.txt" 2>&1
  echo "   exit $? -> $out/$name.txt" | tee -a "$out/log"
}
# Ingest (c32 vs Starlette, batch, ack), end to end, pickup, RSS: raw requests and the client.
step run "$py" bench/run.py --store both --client --json "$out/run.json"
# The peers beside offload's own client: enqueue 1 call/job, bulk, end to end, start-enqueue.
step peers "$py" bench/peers.py --n 5000 --rate-seconds 10 --json "$out/peers.json"
# Durable functions with the official Python SDK (3 steps): runs/s, p50, engine CPU per call.
step functions "$py" bench/functions.py --store both --runs 1000
# SDK send while 1,000 runs are in flight, beside a raw request.
# `serve` as users run it on this box (--workers 2: an API front beside the executor).
step send-sqlite "$py" bench/send_inflight.py --store sqlite --workers 2
step send-postgres "$py" bench/send_inflight.py --store postgres --workers 2
# PostgreSQL round trips per durable call, counted on the wire.
step round-trips "$py" bench/functions.py --store postgres --runs 300 --round-trips
# Every core: serve --workers 1 vs 2 vs 3 (c32 raw ingest), both stores.
step workers-sqlite env STORE=sqlite WORKERS="1 2 3" bash bench/workers_ab.sh 2
step workers-postgres env WORKERS="1 2 3" bash bench/workers_ab.sh 2
echo "== $(date -u +%T) done: $out" | tee -a "$out/log"
