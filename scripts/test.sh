#!/usr/bin/env bash
# Installs everything the test suite needs, builds the canvas bundle and the JupyterLab extension
# (linked into this Python's JupyterLab), then runs every test:
# the JS unit tests (vitest) and the Python suite (pytest, browser end-to-end tests included).
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing Debian chromium for the browser tests"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

echo "== installing Python packages (torch 2.13.0 CPU first: a bare torch would pull a CUDA build)"
python -m pip install -q torch==2.13.0
VORTEX_SKIP_JS=1 python -m pip install -q -e ".[test]"  # the JS is built just below
# spandrel (upscale models) without its torchvision: PyPI has no CPU torchvision (pyproject's `upscale`)
python -m pip install -q --no-deps "spandrel>=0.4,<0.5"

echo "== building the canvas bundle and the JupyterLab extension"
npm --prefix js ci --no-audit --no-fund --loglevel=error
npm --prefix js run build
# JupyterLab loads prebuilt extensions from share/jupyter/labextensions: link this checkout's build
python -m jupyter labextension develop --overwrite .

echo "== JS unit tests (vitest)"
npm --prefix js test

echo "== Python tests (pytest)"
exec python -m pytest "$@"
