"""Benchmark scripts run as the README shows them (`python benchmarks/X.py`) from a fresh clone.

A script's folder, not the repository root, is first on `sys.path`, so a benchmark that imports
the `tests` folder (as `bench_service.py` did for its bundle) fails with `ModuleNotFoundError`;
shared helpers live in the package (`adaptive_beta.training.toy_bundle`).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if p.name.startswith(("bench_", "dev_")))


def test_every_benchmark_script_is_found():
    assert {"bench_service.py", "bench_model.py", "bench_data.py"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_no_benchmark_imports_the_tests_folder(script):
    """Also imports inside functions: `--help` alone would not reach a lazy one."""
    found = []
    for node in ast.walk(ast.parse(script.read_text(), str(script))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
    assert [m for m in found if m.split(".")[0] in {"tests", "benchmarks"}] == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_help_runs_from_the_repository_root(script):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run(
        [sys.executable, str(script.relative_to(ROOT)), "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage:" in res.stdout.lower()
