#!/bin/bash
# `offload serve --workers 1` vs `--workers 2` (an API front beside an executor),
# interleaved rounds: c32 raw ingest (one load process, 32 keep-alive connections, 5 s)
# against a fresh database each.
#   bench/workers_ab.sh [rounds]      (PostgreSQL: needs psql and the local PostgreSQL)
#   STORE=sqlite WORKERS="1 3" bench/workers_ab.sh [rounds]   (store, --workers values)
set -u
cd "$(dirname "$0")/.."
KEY=ofk_admin_bench0123456789abcdef
PORT=${PORT:-9403}
for rep in $(seq 1 "${1:-3}"); do
  for w in ${WORKERS:-1 2}; do
    db=bench_workers_${rep}_$w
    d=$(mktemp -d)
    url="sqlite:///$d/offload.db"
    if [ "${STORE:-postgres}" = postgres ]; then
      psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $db" >/dev/null
      url="postgresql://postgres@127.0.0.1:5432/$db"
    fi
    OFFLOAD_API_KEYS=$KEY OFFLOAD_LOG_LEVEL=warning .venv/bin/offload serve --workers $w \
      --port $PORT --data-dir "$d" --database-url "$url" \
      > "$d/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -s -m 1 127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.2; done
    sleep 1
    echo "${STORE:-postgres} round $rep workers $w load $(cut -d' ' -f1 /proc/loadavg):" \
      "$(.venv/bin/python bench/closedloop.py --port $PORT --seconds 5 --conns 32 --api-key $KEY)"
    kill $pid; wait $pid
    [ "${STORE:-postgres}" = postgres ] &&
      psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
    rm -rf "$d"
  done
done
