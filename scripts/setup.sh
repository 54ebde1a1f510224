#!/usr/bin/env bash
# Idempotent set-up of the lab's Python environment: a venv in .venv with the pinned packages, Debian's
# Chromium (prints the reports as PDF) and poppler-utils (the tests read the PDFs with pdftotext).
# The Docker engine and the images are set up by the lab itself when it first needs them
# (`lab engine`, `lab up`), so that every entry point does its own set-up.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: only what is missing, only with apt-get as root (otherwise say what to install).
missing=()
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
command -v pdftotext >/dev/null || missing+=(poppler-utils)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} (Debian packages) ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; }
  else
    echo "warning: missing ${missing[*]}: install them (apt-get install ${missing[*]}) for the PDF report" >&2
  fi
fi

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
# The notebooks' kernel (the venv's Python), for papermill and JupyterLab.
.venv/bin/python -c 'from lab.report.kernel import ensure_kernel; ensure_kernel()'
