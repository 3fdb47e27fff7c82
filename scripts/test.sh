#!/usr/bin/env bash
# The README's test command: set up the pinned environment, lint, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
# System packages some tests need (PostgreSQL server binaries, Chromium + chromedriver); each script
# installs only what is missing and never fails the run: those tests skip, saying why, without them.
for deps in scripts/test-system-deps.sh scripts/test-system-deps-browser.sh; do
  if [ -f "$deps" ]; then bash "$deps" || echo "warning: $deps failed; the tests that need it will skip" >&2; fi
done
ruff check --no-cache .
ruff format --check .
python -m pytest -q -n 2 --durations=15 "$@"
