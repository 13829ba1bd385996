#!/bin/bash
# The same offload app (dev settings, SQLite) under uvicorn (`offload dev`) and under
# granian (ASGI, uvloop, one worker), interleaved: sequential and c32 raw ingest.
#   bench/server_ab.sh [rounds]          (granian: pip install granian)
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
PORT=${PORT:-9408}
for rep in $(seq 1 "${1:-2}"); do
  for srv in uvicorn granian; do
    d=$(mktemp -d)
    if [ $srv = uvicorn ]; then
      OFFLOAD_LOG_LEVEL=warning .venv/bin/offload dev --port $PORT --data-dir "$d" > "$d/log" 2>&1 &
    else
      (cd bench && GPORT=$PORT GDIR=$d OFFLOAD_LOG_LEVEL=warning exec "$ROOT/.venv/bin/granian" \
        --interface asgi --host 127.0.0.1 --port $PORT --loop uvloop --workers 1 --no-log \
        granian_app:app > "$d/log" 2>&1) &
    fi
    pid=$!
    for _ in $(seq 1 100); do curl -s -m 1 127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.2; done
    sleep 1
    echo "round $rep $srv load $(cut -d' ' -f1 /proc/loadavg):" \
      "seq $(.venv/bin/python bench/closedloop.py --port $PORT --seconds 3 --conns 1) |" \
      "c32 $(.venv/bin/python bench/closedloop.py --port $PORT --seconds 4 --conns 32)"
    kill $pid; wait $pid 2>/dev/null
    while curl -s -m 1 127.0.0.1:$PORT/readyz >/dev/null; do sleep 0.2; done
    rm -rf "$d"
  done
done
