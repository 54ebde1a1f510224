#!/usr/bin/env bash
# Idempotent set-up of the lab's Python environment: a venv in .venv with the pinned packages.
# The Docker engine and the images are set up by the lab itself when it first needs them
# (`lab engine`, `lab up`), so that every entry point does its own set-up.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  if command -v python3.11 >/dev/null; then PY=python3.11; else
    echo "error: pretix-lab needs Python 3.11 (found: $("$PY" --version 2>&1)); install python3.11" >&2
    exit 2
  fi
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv .venv 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
      rm -rf .venv && "$PY" -m venv .venv
    else
      echo "error: cannot create a venv; install python3-venv" >&2; exit 2
    fi
  fi
fi
stamp=".venv/.pretix-lab-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the lab's pinned packages into .venv ..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  echo "$want" > "$stamp"
fi
