#!/usr/bin/env bash
# Makes one venv per engine under bench/filter/.venvs/<name> from requirements/<name>.txt
# (again when that file changes).  Usage: venvs.sh NAME...   Prints nothing on success.
# A venv that fails to install is left without its stamp and its pip log is kept in
# .venvs/<name>.log, so the harness reports the peer as not installable with that error.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-python3}"
rc=0
for name in "$@"; do
    req="$here/requirements/$name.txt"
    v="$here/.venvs/$name"
    [ -f "$req" ] || { echo "no $req" >&2; rc=1; continue; }
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    stamp="$v/.requirements.sha256"
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && continue
    mkdir -p "$here/.venvs"
    [ -x "$v/bin/python" ] || "$py" -m venv "$v"
    if "$v/bin/pip" install -q --disable-pip-version-check -r "$req" >"$here/.venvs/$name.log" 2>&1; then
        echo "$want" >"$stamp"
    else
        echo "venv $name: pip install failed (see $here/.venvs/$name.log)" >&2
        tail -5 "$here/.venvs/$name.log" >&2
        rc=1
    fi
done
exit $rc
