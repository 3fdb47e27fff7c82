#!/usr/bin/env bash
# Create .venv and install the project with the pinned environment (requirements/constraints.txt).
# torch==2.13.0 resolves to the CPU wheel on these machines; the constraints pin everything else.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade "pip>=24" >/dev/null
python -m pip install -q -c requirements/constraints.txt -e ".[dev]"
