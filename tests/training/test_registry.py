"""Registry and promotion gate against a real MLflow SQLite store (isolated per test by conftest)."""

import mlflow

from adaptive_beta.models.bundle.resolve import resolve_bundle
from adaptive_beta.training.registry import (
    Headline,
    champion_history,
    decide,
    list_versions,
    promote,
    register_bundle,
)
from adaptive_beta.training.tracking import setup_mlflow


def _run_with_bundle(tmp_path, tag):
    setup_mlflow()
    b = tmp_path / f"bundle-{tag}"
    b.mkdir()
    (b / "manifest.json").write_text('{"files": {}}')
    (b / "model.onnx").write_text(tag)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(b), artifact_path="bundle")
    return run.info.run_id


def _head(mse_btc, mse_comp, key="k1"):
    return Headline(key, {"BTCUSDT": mse_btc, "CRYPTO_EW": mse_comp}, {"BTCUSDT": 0.10, "CRYPTO_EW": 0.05})


def test_decide_requires_beating_best_baseline_on_every_benchmark():
    ok, reason = decide(_head(0.08, 0.06), None)
    assert not ok and "CRYPTO_EW" in reason
    ok, _ = decide(_head(0.08, 0.04), None)
    assert ok


def test_decide_refuses_scorecards_from_different_data():
    ok, reason = decide(_head(0.08, 0.04, "k2"), _head(0.09, 0.045, "k1"))
    assert not ok and "different held-out data" in reason


def test_register_promote_and_history(tmp_path):
    r1 = _run_with_bundle(tmp_path, "one")
    v1 = register_bundle(r1, tags=_head(0.09, 0.045).to_tags())
    d1 = promote()
    assert d1.promoted and d1.challenger == v1
    # a worse challenger stays challenger
    r2 = _run_with_bundle(tmp_path, "two")
    v2 = register_bundle(r2, tags=_head(0.095, 0.046).to_tags())
    d2 = promote()
    assert not d2.promoted and "does not beat champion" in d2.reason
    # a better one takes over, and the history closes v1's tenure
    r3 = _run_with_bundle(tmp_path, "three")
    v3 = register_bundle(r3, tags=_head(0.07, 0.04).to_tags())
    d3 = promote()
    assert d3.promoted
    hist = champion_history()
    assert [h["version"] for h in hist] == [v1, v3]
    assert hist[0]["until"] == hist[1]["from"] and hist[1]["until"] is None
    rows = list_versions()
    assert [r["version"] for r in rows] == [v3, v2, v1]
    assert rows[0]["aliases"] == ["challenger", "champion"]
    # the champion alias resolves to the bundle folder of v3
    path = resolve_bundle("models:/adaptive-beta@champion")
    assert (path / "model.onnx").read_text() == "three"
    # every decision was logged as a run
    runs = mlflow.search_runs(experiment_names=["adaptive-beta-promotions"])
    assert len(runs) == 3
