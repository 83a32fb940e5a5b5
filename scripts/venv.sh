#!/usr/bin/env bash
# Creates (or updates) the project's virtual environment in .venv. Idempotent: reinstalls
# only when pyproject.toml changed. Sourced by scripts/orch and scripts/test.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.orch-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
  echo "setting up $venv (first run: a few minutes)" >&2
  python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  # CPU build of torch pinned here (a GPU machine: install the CUDA build you need first;
  # pyproject.toml keeps a range)
  "$venv/bin/python" -m pip install -q "torch==2.13.0" >&2
  "$venv/bin/python" -m pip install -q -e "$root[test]" >&2
  echo "$want" > "$stamp"
fi
