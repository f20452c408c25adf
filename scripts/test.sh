#!/usr/bin/env bash
# The project's test command (README line 2): install torch's CPU wheel first so no requirement pulls
# a CUDA build, then the package with its test extra, then the default (not slow) test run.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[test]"
python -m ruff check src tests benchmarks scripts
python -m pytest -q "$@"
