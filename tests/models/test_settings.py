"""Settings: one validated object (`adaptive_beta.models.settings.Settings`), read from ABETA_* variables.

A bad value is one line naming the variable (exit 2 from a command or at import, never a
traceback); defaults that are paths come from the project home, not the working directory; every
setting is documented in docs/serving.md; no module reads an ABETA_* variable itself.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = [ROOT / "models", ROOT / "training", ROOT / "serving", ROOT / "src" / "adaptive_beta"]


def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ABETA_") and k != "MLFLOW_TRACKING_URI"}
    env.update(extra)
    return env


def test_every_existing_variable_is_a_field(monkeypatch):
    from adaptive_beta.models.settings import Settings, get_settings

    monkeypatch.setenv("ABETA_MAX_CONCURRENCY", "64")
    monkeypatch.setenv("ABETA_API_KEYS", "trader:0123456789abcdef")
    monkeypatch.setenv("ABETA_AUDIT_ANCHOR_EVERY", "2")
    s = get_settings()
    assert isinstance(s, Settings)
    assert s.max_concurrency == 64 and s.audit_anchor_every == 2
    assert s.api_keys.get_secret_value() == "trader:0123456789abcdef"
    assert "0123456789abcdef" not in repr(s)  # secrets stay out of logs
    monkeypatch.setenv("ABETA_MAX_CONCURRENCY", "8")  # read again when the environment changes
    assert get_settings().max_concurrency == 8


def test_a_bad_value_names_the_variable(monkeypatch):
    from adaptive_beta.models.data.schema import DataError
    from adaptive_beta.models.settings import SettingsError, get_settings

    monkeypatch.setenv("ABETA_MAX_CONCURRENCY", "lots")
    with pytest.raises(SettingsError) as err:
        get_settings()
    assert isinstance(err.value, DataError)  # the CLI prints DataError as one line, exit 2
    text = str(err.value)
    assert "ABETA_MAX_CONCURRENCY" in text and "'lots'" in text and "\n" not in text


def test_a_bad_value_at_import_is_one_line_and_exit_2():
    """`bentoml serve` imports the service module: a bad setting there is no traceback."""
    proc = subprocess.run(
        [sys.executable, "-c", "import adaptive_beta.serving.service"],
        env=_clean_env(ABETA_MAX_CONCURRENCY="lots"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "ABETA_MAX_CONCURRENCY" in lines[0], proc.stderr[-2000:]


def test_path_defaults_come_from_the_project_home_not_the_working_directory(tmp_path):
    code = (
        "from adaptive_beta.models.settings import get_settings\n"
        "from adaptive_beta.models.bundle.resolve import default_tracking_uri\n"
        "s = get_settings()\n"
        "print(s.home); print(s.audit_db); print(default_tracking_uri())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    home, audit_db, uri = out.stdout.split()
    assert Path(home) == ROOT  # an editable install: the checkout it was installed from
    assert Path(audit_db) == ROOT / "audit" / "audit.db"
    assert uri == f"sqlite:///{ROOT / 'mlruns' / 'mlflow.db'}"
    assert list(tmp_path.iterdir()) == []  # nothing created in the working directory
    moved = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_clean_env(ABETA_HOME=str(tmp_path / "h")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert moved.stdout.split()[1] == str(tmp_path / "h" / "audit" / "audit.db")


def test_every_setting_is_documented():
    from adaptive_beta.models.settings import Settings

    doc = (ROOT / "docs" / "serving.md").read_text()
    missing = [v for v in Settings.variables() if f"`{v}`" not in doc]
    assert missing == []


def test_no_module_reads_abeta_variables_itself():
    """Only models/settings.py reads ABETA_* variables (os.environ / os.getenv / typer envvar=)."""
    hits = []
    for folder in PACKAGE:
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "models/settings.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call | ast.Subscript):
                    text = ast.unparse(node)
                    env_read = "os.environ" in text or "getenv" in text or "envvar=" in text
                    if env_read and ("ABETA_" in text or "_ENV" in text):
                        hits.append(f"{rel}:{node.lineno}")
    assert sorted(set(hits)) == []
