#!/usr/bin/env bash
# The README's test command: set up the pinned environment, lint, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if [ -x scripts/test-system-deps.sh ]; then bash scripts/test-system-deps.sh; fi
ruff check .
python -m pytest -q -n 2 --durations=15 "$@"
