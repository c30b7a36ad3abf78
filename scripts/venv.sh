# Sourced by ./run-search and ./run-tests: make .venv on first use, refresh it when pyproject.toml
# changes, then put it first on PATH. Set PYTHON to choose the interpreter (default: python3).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
stamp="$venv/.installed-$(sha1sum "$repo/pyproject.toml" | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "setting up $venv (first use or pyproject.toml changed) ..." >&2
    [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
    log="$venv/install.log"  # pip's warnings go here; shown only when the install fails
    if ! { "$venv/bin/python" -m pip install -q --upgrade pip &&
           "$venv/bin/python" -m pip install -q -e "$repo[dev,postgres]"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "setting up $venv failed (log above, kept in $log)" >&2
        exit 1
    fi
    rm -f "$venv"/.installed-*
    touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
export RAY_USAGE_STATS_ENABLED="${RAY_USAGE_STATS_ENABLED:-0}"
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-disabled}"
cd "$repo"
