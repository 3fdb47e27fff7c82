"""`--ray-address` for `abeta train`, `abeta evaluate baselines` and `abeta evaluate model` (issue 14 item 1): the same
small config trained in-process and on a 2-worker local Ray cluster (started here, stopped at the
end) gives a byte-identical scorecard JSON, equal test predictions and equal MLflow runs (parent
metrics and nested fold runs, timings aside); without an address nothing imports Ray; a bad
address stops with exit 2 naming the option or the setting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptive_beta.cli.main import app
from adaptive_beta.models.sim.config import SimConfig
from adaptive_beta.models.sim.simulator import simulate
from adaptive_beta.models.sim.write import write_simulation

ray = pytest.importorskip("ray")

TINY = """\
n_boot = 50
attribution_windows = 8
progress = false

[model]
epochs = 2
hidden = 8
max_train_samples = 600
lookback = "32d"
max_steps = 8
n_members = 2

[walk_forward]
train_min = "300d"
val = "60d"
test = "120d"
max_folds = 2
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A private 2-CPU Ray cluster for the module; `ray_session` reuses the connection."""
    root = tmp_path_factory.mktemp("ray")
    data = write_simulation(simulate(SimConfig(seed=5, n_assets=4, days=700)), root / "sim")
    (root / "tiny.toml").write_text(f'data = "{data}"\n' + TINY)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir="/tmp/abeta-ray-test")
    yield root
    ray.shutdown()


def _train(root: Path, out: Path, *extra: str) -> str:
    res = CliRunner().invoke(
        app, ["train", "--config", str(root / "tiny.toml"), "--scorecard-out", str(out), "--quiet", *extra]
    )
    assert res.exit_code == 0, res.output
    return next(line.split()[-1] for line in res.output.splitlines() if line.startswith("run id:"))


def _runs(run_id: str) -> tuple[dict, list[dict]]:
    """The parent's metrics and each nested fold run's (name, params, metrics), timings left out."""
    timing = ("_s", "seconds")
    parent = mlflow.get_run(run_id)
    metrics = {k: v for k, v in parent.data.metrics.items() if not k.endswith(timing)}
    children = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
        output_format="list",
    )
    folds = sorted(
        (
            c.info.run_name,
            c.data.params,
            {k: v for k, v in c.data.metrics.items() if not k.endswith(timing)},
        )
        for c in children
    )
    return metrics, folds


def test_train_on_ray_gives_the_in_process_scorecard_predictions_and_runs(cluster, tmp_path):
    here = _train(cluster, tmp_path / "here.json")
    on_ray = _train(cluster, tmp_path / "ray.json", "--ray-address", "local")
    a, b = (tmp_path / "here.json").read_bytes(), (tmp_path / "ray.json").read_bytes()
    assert a == b
    records = json.loads(a)
    model = [r for r in records if r["kind"] == "model" and r["metric"] == "rmse" and r["split"] == "pooled"]
    assert len(model) == 2 and all(0 < r["value"] < 1 for r in model)
    p_here = pd.read_parquet(tmp_path / "here.predictions.parquet")
    p_ray = pd.read_parquet(tmp_path / "ray.predictions.parquet")
    assert len(p_here) > 100 and p_here.equals(p_ray)
    m_here, folds_here = _runs(here)
    m_ray, folds_ray = _runs(on_ray)
    assert here != on_ray and len(m_here) > 20 and m_here == m_ray
    assert len(folds_here) == 2 and folds_here == folds_ray
    assert folds_here[0][2]["best_val_loss"] == folds_ray[0][2]["best_val_loss"]


def test_evaluate_baselines_on_ray_gives_the_same_records(cluster, tmp_path):
    data = str(cluster / "sim")
    for name, extra in (("here", []), ("ray", ["--ray-address", "local"])):
        res = CliRunner().invoke(
            app, ["evaluate", "baselines", "--data", data, "--out", str(tmp_path / f"{name}.json"), *extra]
        )
        assert res.exit_code == 0, res.output
    here = json.loads((tmp_path / "here.json").read_text())
    assert len(here) > 100
    assert (tmp_path / "here.json").read_bytes() == (tmp_path / "ray.json").read_bytes()


def test_evaluate_model_on_ray_gives_the_same_records(cluster, tmp_path):
    """A bundle scored on another dataset: the same scorecard bytes in-process and on the cluster."""
    import shutil

    from tests.serving.conftest import build_tiny_bundle

    build_tiny_bundle(tmp_path / "bundle")  # its input series is SPY: file the simulator's SPX as SPY
    data = shutil.copytree(cluster / "sim", tmp_path / "sim")
    shutil.copy(data / "factors" / "SPX.csv", data / "factors" / "SPY.csv")
    for name, extra in (("here", []), ("ray", ["--ray-address", "local"])):
        args = ["evaluate", "model", "--model", str(tmp_path / "bundle"), "--data", str(data)]
        res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / f"{name}.json"), *extra])
        assert res.exit_code == 0, res.output
    here = json.loads((tmp_path / "here.json").read_text())
    assert len([r for r in here if r["kind"] == "model" and r["metric"] == "rmse"]) >= 2
    assert (tmp_path / "here.json").read_bytes() == (tmp_path / "ray.json").read_bytes()


def test_without_an_address_nothing_imports_ray():
    code = (
        "import sys, adaptive_beta.cli.main, adaptive_beta.training.train_run, adaptive_beta.training.tune;"
        "from adaptive_beta.training.cluster import resolve_address;"
        "print(resolve_address(None), 'ray' in sys.modules)"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "ABETA_RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["None", "False"]


@pytest.mark.parametrize(
    "command",
    [
        ["train"],
        ["tune"],
        ["evaluate", "baselines", "--data", "x", "--out", "y"],
        ["evaluate", "model", "--model", "m", "--data", "x", "--out", "y"],
    ],
)
def test_the_option_is_in_help_and_a_bad_address_exits_2_naming_it(command, monkeypatch, capsys):
    from adaptive_beta.cli.main import run

    head = [w for w in command if not w.startswith("-") and w not in ("m", "x", "y")]
    assert "--ray-address" in CliRunner().invoke(app, [*head, "--help"], terminal_width=200).output
    assert run([*command, "--ray-address", "a cluster"]) == 2
    assert "--ray-address='a cluster': expected auto, local or HOST:PORT" in capsys.readouterr().err
    monkeypatch.setenv("ABETA_RAY_ADDRESS", "nowhere")
    assert run(command) == 2
    assert "ABETA_RAY_ADDRESS='nowhere'" in capsys.readouterr().err


def test_an_unreachable_cluster_exits_2_in_seconds_naming_it(capsys):
    """`ray.init` would retry an address where no head answers for minutes; the CLI says so at once."""
    import socket
    import time

    from adaptive_beta.cli.main import run

    with socket.socket() as s:  # a port nothing listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    assert (
        run(["evaluate", "baselines", "--data", "x", "--out", "y", "--ray-address", f"127.0.0.1:{port}"]) == 2
    )
    assert time.perf_counter() - t0 < 15
    assert f"Ray cluster at 127.0.0.1:{port}" in capsys.readouterr().err
