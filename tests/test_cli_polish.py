"""CLI conventions (issue 13 item 6): `--version`, help text that keeps its brackets, library noise
kept off the console.  (The dead `--walk-forward` flag: tests/training/test_cmd_backtest.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from adaptive_beta.cli.main import app

WIDE = {"COLUMNS": "200"}


def test_version_prints_the_installed_version_and_exits_0():
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.output.strip() == f"abeta (adaptive-beta) {version('adaptive-beta')}"
    assert "--version" in CliRunner().invoke(app, ["--help"], env=WIDE).output


def test_help_keeps_bracketed_section_names():
    """Rich markup used to eat `[monitor]` and `[policy]` (TOML section names) from option help."""
    monitor = CliRunner().invoke(app, ["monitor", "--help"], env=WIDE).output
    assert "TOML/JSON with a [monitor] section" in monitor
    recal = " ".join(CliRunner().invoke(app, ["recalibrate", "--help"], env=WIDE).output.split())
    assert "[monitor] (MonitorConfig) and [policy] (RecalibrationPolicy)" in recal
    simulate = CliRunner().invoke(app, ["data", "simulate", "--help"], env=WIDE)
    assert simulate.exit_code == 0


@pytest.mark.slow  # subprocesses that import mlflow / fit HMMs
def test_a_new_mlflow_store_prints_no_database_chatter(tmp_path):
    # an empty file is an empty SQLite database: `models list` reads it (it refuses a missing
    # store) and MLflow creates its tables, which is the chatter this test is about
    (tmp_path / "new.db").touch()
    (tmp_path / "other.db").touch()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/new.db"}
    env.pop("ABETA_LIBRARY_LOGS", None)
    cmd = [sys.executable, "-m", "adaptive_beta.cli.main", "models", "list"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "no versions registered" in res.stdout
    assert "database tables" not in res.stderr and res.stderr.strip() == ""
    loud = subprocess.run(
        cmd,
        env={**env, "ABETA_LIBRARY_LOGS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/other.db"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Creating initial MLflow database tables" in loud.stderr  # the test is not vacuous


@pytest.mark.slow  # subprocesses that import mlflow / fit HMMs
def test_hmmlearn_convergence_warnings_are_silenced():
    """EM on heavy-tailed samples warns "Model is not converging" (4 of these 10 fits); not after
    `quiet_libraries`, which `abeta` calls at start."""
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        if sys.argv[1] == "quiet":
            from adaptive_beta.models.noise import quiet_libraries
            quiet_libraries()
        from adaptive_beta.training.regime_baselines import HMMRegimeBaseline
        for seed in range(10):
            r = np.random.default_rng(seed).standard_t(2, size=300) * 0.01
            HMMRegimeBaseline(seed=seed).fit(r, np.zeros(300, dtype=int))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "ABETA_LIBRARY_LOGS"}
    runs = {
        mode: subprocess.run(
            [sys.executable, "-c", code, mode], env=env, capture_output=True, text=True, timeout=300
        )
        for mode in ("loud", "quiet")
    }
    assert runs["loud"].stderr.count("Model is not converging") >= 1
    assert runs["quiet"].returncode == 0 and "not converging" not in runs["quiet"].stderr


@pytest.mark.parametrize(
    "argv, says",
    [
        (["train", "--bogus"], "error: No such option: --bogus (see 'abeta train --help')"),
        (["data", "simulate", "--assets", "x"], "error: Invalid value for '--assets'"),
        (
            ["data", "validate", "/nonexistent-abeta"],
            "error: file /nonexistent-abeta: dataset path does not exist",
        ),
    ],
)
def test_one_error_style_usage_and_data_errors_are_one_error_line_and_exit_2(argv, says, capsys):
    """Click's "Error: No such option" box and our data errors used to look different."""
    from adaptive_beta.cli.main import run

    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err
    assert "Usage:" not in err and "Error:" not in err


def test_help_and_version_still_exit_0(capsys):
    from adaptive_beta.cli.main import run

    assert run(["--version"]) == 0 and run(["train", "--help"]) == 0
    assert "--config" in capsys.readouterr().out
