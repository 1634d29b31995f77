#!/usr/bin/env bash
# Lint and type-check (run by .ci/run before the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check vortex_jupyter tests benchmarks
ruff format --check vortex_jupyter >/dev/null 2>&1 || true  # formatting is advisory
mypy
