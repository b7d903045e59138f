#!/usr/bin/env bash
# Ingest / reopen / crash benchmark of embedded vector databases (see README.md here).
#   bench/ingest/run.sh [--n N] [--dim D] [--batch B] [--peers a,b,c] [other ingest.py options]
#   bench/ingest/run.sh --n 20000          # quick mode
# Creates bench/ingest/.venv from requirements.txt (again when that file changes), then runs
# ingest.py; results go to bench/results/ingest-<n>-<gitshort>/results.{json,md}.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
py="${PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]]; then
  "$py" -m venv "$venv"
fi
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
  echo "$want" > "$stamp"
fi
command -v strace >/dev/null || echo "note: strace not found; the 'durable at return?' probe is skipped (apt-get install strace)" >&2
exec "$venv/bin/python" "$here/ingest.py" "$@"
