"""Run `abeta train`: the walk-forward scorecard, the final fit, the bundle, the MLflow run, the
registry and the promotion gate, with progress on stderr.  See `adaptive_beta.training.pipeline` for the parts.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from adaptive_beta.training.pipeline import (
    MODEL_KIND,
    Prepared,
    TrainResult,
    _coverage_records,
    eval_key,
    final_ranges,
    model_name_of,
    prepare,
    regime_evaluation,
    say,
    walk_forward,
)
from adaptive_beta.training.train_config import TrainConfig


def score_all(prep: Prepared, cfg: TrainConfig, folds, preds: dict[int, pd.DataFrame]):
    """Baselines and the model on the same test periods, plus coverage and regime records."""
    from adaptive_beta.training.scorecard import score_forecasts

    name = model_name_of(cfg)
    model_long = pd.concat([p for p in preds.values() if not p.empty]).sort_index()
    forecasts = dict(prep.baselines)
    forecasts[name] = model_long[prep.benchmarks]
    kinds = {k: "baseline" for k in prep.baselines} | {name: MODEL_KIND}
    card = score_forecasts(
        forecasts,
        kinds,
        prep.targets,
        prep.moments,
        folds,
        prep.truth,
        horizon_bars=to_bars(cfg.horizon, prep),
        block_bars=to_bars("60d", prep),
        n_boot=cfg.n_boot,
        progress=cfg.progress,
    )
    extra = []
    for fold in folds:
        p = preds.get(fold.k)
        if p is not None and not p.empty:
            extra += _coverage_records(p, prep.targets, prep.benchmarks, fold.name, name, card.samples)
    extra += _coverage_records(model_long, prep.targets, prep.benchmarks, "pooled", name, card.samples)
    regime_records, regime_extra = regime_evaluation(prep, folds, preds, name)
    card.records.extend(extra + regime_records)
    return card, model_long, regime_extra


def predictions_path(scorecard_out: str | Path) -> Path:
    """Where the walk-forward test predictions go beside a scorecard (for `abeta backtest --forecasts`)."""
    p = Path(scorecard_out)
    return p.with_name(p.stem + ".predictions.parquet")


def to_bars(duration: str, prep: Prepared) -> int:
    from adaptive_beta.models.durations import to_periods

    return to_periods(duration, prep.panel.freq)


def headline(card, prep: Prepared, cfg: TrainConfig):
    from adaptive_beta.training.registry import Headline

    name = model_name_of(cfg)
    model_mse, base_mse, base_name = {}, {}, {}
    for b in prep.benchmarks:
        rm = card.value(name, b, "rmse")
        if rm is None:
            continue
        model_mse[b] = rm**2
        best = card.best(b, "rmse", kind="baseline")
        base_name[b] = best
        base_mse[b] = card.value(best, b, "rmse") ** 2
    return Headline(eval_key(prep, cfg), model_mse, base_mse, base_name)


def model_card(cfg: TrainConfig, prep: Prepared, card, head, fit, attributions) -> str:
    p = prep.panel
    lines = [
        f"# Model card: {cfg.model_name} ({model_name_of(cfg)})",
        "",
        "Forecasts the forward beta of crypto perpetual futures to each benchmark over the next "
        f"{cfg.horizon}, with a {int(cfg.model.interval_level * 100)} % interval, and the forward market regime "
        f"over {cfg.regime_horizon}. The network predicts a correction to Welch's slope-winsorised beta "
        f"(half-life {cfg.features.welch_halflife}), which it receives as an input.",
        "",
        "## Data",
        f"- source: `{prep.data_path}`",
        f"- panel: {p.describe()}",
        f"- fingerprint: `{p.fingerprint()[:16]}`; feature spec hash `{cfg.features.hash()[:16]}`",
        f"- final fit: train {fit.train_range[0]} .. {fit.train_range[1]}, validation {fit.val_range[0]} .. {fit.val_range[1]}",
        "",
        "## Walk-forward scorecard (pooled test folds; MSE vs realised forward beta)",
        "",
        "| benchmark | model MSE | best baseline | its MSE | ratio |",
        "|---|---|---|---|---|",
    ]
    for b in head.model_mse:
        lines.append(
            f"| {b} | {head.model_mse[b]:.5f} | {head.best_baseline[b]} | {head.best_baseline_mse[b]:.5f} | "
            f"{head.model_mse[b] / head.best_baseline_mse[b]:.3f} |"
        )
    cov = [r for r in card.records if r["metric"] == "coverage90" and r["split"] == "pooled"]
    if cov:
        lines += [
            "",
            "Interval coverage (target 0.90): "
            + ", ".join(f"{r['benchmark']} {r['value']:.3f}" for r in cov),
        ]
    reg = {
        r["estimator"]: r["value"]
        for r in card.records
        if r["benchmark"] == "regime" and r["metric"] == "logloss" and r["split"] == "pooled"
    }
    if reg:
        lines += ["", "Regime log-loss (pooled test): " + ", ".join(f"{k} {v:.3f}" for k, v in reg.items())]
    if attributions:
        lines += ["", "## Global attributions (integrated gradients, share by feature group)"]
        for b, a in attributions.items():
            lines.append(f"- {b}: " + ", ".join(f"{g} {v:.2f}" for g, v in list(a.items())[:5]))
    lines += [
        "",
        "## Limits",
        "- Beta is estimated from returns at the panel's bar frequency; realised forward betas are themselves noisy "
        "(sampling noise is a large share of their variance), so RMSE has a floor no model removes.",
        "- The model corrects a classical beta; in regime breaks it lags like every estimator that learns from history.",
        "- Cross-market factors are aligned with a bounded staleness; stale factors are flagged, not invented.",
        "- Trained on the data above only; check `abeta evaluate model` on other assets/venues before relying on it.",
    ]
    return "\n".join(lines) + "\n"


def train(
    cfg: TrainConfig,
    panel=None,
    scorecard_out: str | Path | None = None,
    ray_address: str | None = None,
) -> TrainResult:
    """The whole `abeta train` job; returns run id, scorecard, bundle path and registry outcome.

    ray_address: fit the walk-forward's folds x members as tasks on that Ray cluster (same
    numbers); None: in-process.  The final fit stays here (its checkpoints are local files)."""
    timings = {}
    t0 = time.perf_counter()
    prep = prepare(cfg, panel)
    timings["prepare_s"] = time.perf_counter() - t0
    infos, card, model_long, regime_extra, head = _walk_forward_scorecard(
        prep, cfg, scorecard_out, timings, ray_address
    )
    fit, train_rng = _final_fit(prep, cfg, timings)
    attributions = _global_attributions(prep, cfg, fit)
    text = model_card(cfg, prep, card, head, fit, attributions)
    meta = _bundle_meta(cfg, prep, head, train_rng)
    run_id, bundle_dir, model_uri = _mlflow_run(
        cfg, prep, fit, infos, card, head, text, meta, model_long, regime_extra, attributions, timings
    )
    version, decision = _register(cfg, run_id, head, model_uri)
    timings["total_s"] = time.perf_counter() - t0
    return TrainResult(run_id, card, card.records, bundle_dir, version, decision, timings)


def _walk_forward_scorecard(
    prep: Prepared, cfg: TrainConfig, scorecard_out, timings: dict, ray_address: str | None = None
):
    """Walk-forward fits and their scorecard first: the final model is judged on folds it never saw.

    Writes the scorecard and its test predictions beside it when `scorecard_out` is given.
    """
    t1 = time.perf_counter()
    folds, preds, infos = walk_forward(prep, cfg, ray_address)
    timings["walk_forward_s"] = time.perf_counter() - t1
    card, model_long, regime_extra = score_all(prep, cfg, folds, preds)
    head = headline(card, prep, cfg)
    if scorecard_out:
        card.to_json(scorecard_out)
        predictions_path(scorecard_out).parent.mkdir(parents=True, exist_ok=True)
        model_long.to_parquet(predictions_path(scorecard_out))
    return infos, card, model_long, regime_extra, head


def _final_fit(prep: Prepared, cfg: TrainConfig, timings: dict):
    """The model that ships: fit on the most recent train/validation ranges (`final_ranges`).

    With `trainer.checkpoint` its best epoch's checkpoint (per member) lands in a scratch folder
    that `_mlflow_run` logs under `checkpoints/`."""
    from adaptive_beta.training import tracking
    from adaptive_beta.training.fit import fit_model

    t2 = time.perf_counter()
    train_rng, val_rng = final_ranges(prep, cfg)
    say(
        f"final fit: train ..{train_rng[1]:%Y-%m-%d}, validation {val_rng[0]:%Y-%m-%d}..{val_rng[1]:%Y-%m-%d}",
        cfg.progress,
    )
    fit = fit_model(
        prep.features,
        prep.targets,
        prep.regimes,
        train_rng,
        val_rng,
        cfg.model,
        prep.benchmarks,
        progress=cfg.progress,
        freq=prep.panel.freq,
        timestamps=prep.panel.index,
        trainer=cfg.trainer,
        checkpoint_dir=tracking.scratch_dir("abeta-ckpt-") if cfg.trainer.checkpoint else None,
    )
    timings["final_fit_s"] = time.perf_counter() - t2
    return fit, train_rng


def _global_attributions(prep: Prepared, cfg: TrainConfig, fit) -> dict:
    """Integrated gradients by feature group on evenly spread windows; a failure only warns,
    because attributions are a report, not a gate."""
    from adaptive_beta.training.attributions import integrated_gradients_by_group

    attributions = {}
    try:
        from adaptive_beta.models.features.windows import feature_cube, gather_windows, sample_index

        cube, ts, syms = feature_cube(
            prep.features.frame, fit.feature_columns, prep.panel.index, prep.panel.symbols
        )
        base_idx = [fit.feature_columns.index(fit.base_columns[b]) for b in fit.benchmarks]
        pairs = sample_index(np.isfinite(cube[:, :, base_idx]).all(axis=2), fit.lookback_bars, fit.stride)
        pick = pairs[np.linspace(0, len(pairs) - 1, min(cfg.attribution_windows, len(pairs))).astype(int)]
        x = gather_windows(cube, pick, fit.lookback_bars, fit.stride)
        attributions = integrated_gradients_by_group(
            fit.net, x, fit.mean, fit.feature_columns, fit.groups, fit.benchmarks
        )
    except Exception as exc:  # attributions are a report, not a gate
        say(f"warning: attributions failed: {exc}", cfg.progress)
    return attributions


def _bundle_meta(cfg: TrainConfig, prep: Prepared, head, train_rng) -> dict:
    """What the bundle records about its data and its headline scores, so a served model can be
    traced back to the data and evaluation that produced it."""
    from adaptive_beta.models.bundle.meta import bundle_inputs

    return {
        "model_name": cfg.model_name,
        "horizon": cfg.horizon,
        "regime_horizon": cfg.regime_horizon,
        "data_fingerprint": prep.panel.fingerprint(),
        "data_source": prep.data_path,
        "training_period": {"start": str(prep.panel.index[0]), "end": str(train_rng[1])},
        **bundle_inputs(prep.panel),
        "metrics": {
            "model_mse": head.model_mse,
            "best_baseline_mse": head.best_baseline_mse,
            "best_baseline": head.best_baseline,
            "eval_key": head.eval_key,
        },
    }


def _mlflow_run(
    cfg, prep, fit, infos, card, head, text, meta, model_long, regime_extra, attributions, timings
):
    """One MLflow run holding the bundle, config, fingerprints, metrics, plots and card, so the
    registry can point at a run that explains itself.  Returns (run id, bundle folder, the URI of
    the bundle logged as an MLflow model)."""
    import mlflow

    from adaptive_beta.training import tracking
    from adaptive_beta.training.export import export_bundle

    tracking.setup_mlflow(cfg.experiment)
    with mlflow.start_run(run_name=f"{model_name_of(cfg)}-{Path(prep.data_path).name}") as run:
        meta["run_id"] = run.info.run_id
        tmp = Path(tempfile.mkdtemp(prefix="abeta-bundle-"))
        bundle_dir = export_bundle(fit, cfg.features, meta, tmp / "bundle", text)
        _log_params_and_tags(cfg, prep, head)
        _log_dataset(prep)
        _log_histories(fit)
        _log_checkpoints(fit)
        mlflow.log_metrics(_score_metrics(card))
        mlflow.log_metrics({k: float(v) for k, v in timings.items()})
        tracking.log_json(card.records, "scorecard.json")
        tracking.log_text(card.table(), "scorecard.txt")
        tracking.log_json([{k: v for k, v in i.items() if k != "history"} for i in infos], "folds.json")
        _log_fold_runs(infos, card, prep.data_path)
        tracking.log_json(attributions, "attributions.json")
        tracking.log_text(text, "model_card.md")
        _log_plots(prep, cfg, model_long, card, regime_extra, attributions)
        tracking.log_folder(bundle_dir, "bundle")
        model_uri = _log_model(prep, bundle_dir, cfg.progress)
        with tempfile.TemporaryDirectory() as tmpd:
            pred_file = Path(tmpd) / "walkforward_predictions.parquet"
            model_long.to_parquet(pred_file)
            mlflow.log_artifact(str(pred_file))
        run_id = run.info.run_id
    return run_id, bundle_dir, model_uri


def _log_model(prep: Prepared, bundle_dir: Path, progress: bool) -> str:
    """The bundle as an MLflow pyfunc model with an input example: the last bars of two assets
    and every series the model needs, cut from the training data as a client would send them."""
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.panel_frame import panel_frame_from_panel
    from adaptive_beta.models.bundle.pyfunc import log_bundle_model
    from adaptive_beta.models.data.loaders import factor_observations

    meta = load_bundle(bundle_dir).meta
    example = None
    try:
        raw = {name: fs.values for name, fs in factor_observations(prep.data_path).items()}
        assets = [s for s in prep.panel.symbols if s not in meta.required_history.series][:2]
        example = panel_frame_from_panel(prep.panel, meta.required_history, assets, raw)
    except Exception as exc:  # the example documents the model; a model without one still serves
        say(f"warning: no input example for the MLflow model: {exc}", progress)
    return log_bundle_model(bundle_dir, input_example=example).model_uri


def _log_dataset(prep: Prepared) -> None:
    """The training panel as the run's input dataset (`mlflow.log_input`): source, the panel's
    fingerprint as digest and its close-price schema, so the UI links runs to the data they saw."""
    import warnings

    import mlflow

    fingerprint = prep.panel.fingerprint()
    with warnings.catch_warnings():  # a local path matches two registered (identical) source classes
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        dataset = mlflow.data.from_pandas(
            prep.panel.close.reset_index(),
            source=str(Path(prep.data_path).resolve()),
            name=Path(prep.data_path).name,
            digest=fingerprint[:16],
        )
    mlflow.log_input(dataset, context="training", tags={"panel_sha256": fingerprint})


def _log_params_and_tags(cfg: TrainConfig, prep: Prepared, head) -> None:
    """Config, code and data identity on the active run: what is needed to reproduce it."""
    import mlflow

    from adaptive_beta.training import tracking

    mlflow.log_params(_flat_params(cfg))
    mlflow.set_tags(
        {
            "git_commit": tracking.git_commit(),
            "data_fingerprint": prep.panel.fingerprint(),
            "data_source": prep.data_path,
            "feature_spec_hash": cfg.features.hash(),
            "eval_key": head.eval_key,
            **{f"version.{k}": v for k, v in tracking.package_versions().items()},
        }
    )
    mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")
    mlflow.log_dict(
        {
            "manifest_sha256": prep.panel.meta.get("manifest_sha256"),
            "panel_sha256": prep.panel.fingerprint(),
        },
        "data_fingerprint.json",
    )


def _log_histories(fit) -> None:
    """Per-epoch curves of the final fit on the parent run, to see over/underfitting."""
    import mlflow

    for epoch, h in enumerate(fit.history):
        mlflow.log_metrics(_epoch_metrics(h), step=epoch)


def _epoch_metrics(h: dict) -> dict[str, float]:
    return {k: float(v) for k, v in h.items() if isinstance(v, int | float) and k != "epoch"}


def _log_checkpoints(fit) -> None:
    """The final fit's best-epoch Lightning checkpoint(s) as `checkpoints/member<m>/best-epoch=N.ckpt`
    (one per ensemble member; folds keep none), to resume or inspect the fit in torch."""
    import shutil

    import mlflow

    for path in fit.checkpoints:
        p = Path(path)
        mlflow.log_artifact(str(p), artifact_path=f"checkpoints/{p.parent.name}")
        mlflow.set_tag(f"checkpoint.{p.parent.name}", f"checkpoints/{p.parent.name}/{p.name}")
    for folder in {Path(path).parent.parent for path in fit.checkpoints}:  # the scratch folder
        shutil.rmtree(folder, ignore_errors=True)


def fold_run_name(info: dict) -> str:
    """`fold 3 (test 2023-01..2023-04)`: the walk-forward fold as the MLflow UI lists it."""
    return f"fold {info['fold']} (test {info['test'][0][:7]}..{info['test'][1][:7]})"


def _log_fold_runs(infos: list[dict], card, data_source: str) -> None:
    """Each walk-forward fold as a nested run of the active run: its ranges as params, its fit's
    per-epoch curves (train/val loss, NLL, CE, MSE) by step, its validation metrics, and the
    model's test scores on that fold from the scorecard (`<estimator>.<benchmark>.<metric>`).
    The parent keeps the pooled scorecard metrics; the folds no longer crowd it as `fold<k>_*`."""
    import mlflow

    for info in infos:
        with mlflow.start_run(run_name=fold_run_name(info), nested=True):
            mlflow.set_tags({"abeta.kind": "walk-forward fold", "data_source": data_source})
            mlflow.log_params(
                {
                    "fold": info["fold"],
                    **{
                        f"{part}_{end}": info[part][i]
                        for part in ("train", "val", "test")
                        for i, end in ((0, "start"), (1, "end"))
                    },
                }
            )
            for epoch, h in enumerate(info["history"]):
                mlflow.log_metrics(_epoch_metrics(h), step=epoch)
            # the fit's summary; its val_loss (the best epoch's) is best_val_loss beside the curve
            summary = {
                ("best_val_loss" if k == "val_loss" else k): float(v)
                for k, v in info.items()
                if isinstance(v, int | float) and k != "fold"
            }
            mlflow.log_metrics(
                {**summary, **_score_metrics(card, split=f"fold{info['fold']}", model_only=True)}
            )


def _register(cfg: TrainConfig, run_id: str, head, model_uri: str | None = None):
    """Register the run's bundle (the MLflow model at `model_uri`) as challenger and, if asked, let
    the promotion gate decide; returns (version, decision), None where a step is switched off."""
    from adaptive_beta.training.registry import promote, register_bundle

    version = decision = None
    if cfg.register_model:
        version = register_bundle(run_id, cfg.model_name, "bundle", tags=head.to_tags(), model_uri=model_uri)
        say(f"registered {cfg.model_name} version {version} (alias challenger)", cfg.progress)
        if cfg.promote:
            decision = promote(cfg.model_name, version)
            say(
                ("promoted to champion: " if decision.promoted else "not promoted: ") + decision.reason,
                cfg.progress,
            )
    return version, decision


def _flat_params(cfg: TrainConfig) -> dict[str, str]:
    out = {}

    def walk(prefix, obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = json.dumps(obj) if isinstance(obj, list | tuple) else str(obj)

    walk("", cfg.model_dump(mode="json"))
    return {k: v[:500] for k, v in out.items()}


def _score_metrics(card, split: str = "pooled", model_only: bool = False) -> dict[str, float]:
    """Scorecard records of one split as MLflow metrics `<estimator>.<benchmark>.<metric>`."""
    out = {}
    for r in card.records:
        if r["split"] != split or r["value"] is None or not np.isfinite(r["value"]):
            continue
        if model_only and r["kind"] != "model":
            continue
        key = f"{r['estimator']}.{r['benchmark']}.{r['metric']}"
        out[key.replace("@", "_")] = float(r["value"])
    return out


def _log_plots(
    prep: Prepared, cfg: TrainConfig, model_long: pd.DataFrame, card, regime_extra, attributions
) -> None:
    from adaptive_beta.models.features.targets import REGIME_NAMES
    from adaptive_beta.training import plots, tracking

    symbols = [s for s in prep.panel.symbols if s not in prep.benchmarks][: cfg.plot_assets]
    for b in prep.benchmarks:
        best = card.best(b, "rmse", kind="baseline")
        base = prep.baselines.get(best, {}).get(b)
        fig = plots.forecast_vs_realised(model_long, prep.targets, base, b, symbols, prep.truth, best)
        tracking.log_figure(fig, f"plots/forecast_vs_realised_{b}.png")
    tracking.log_figure(
        plots.interval_calibration(model_long, prep.targets, prep.benchmarks),
        "plots/interval_calibration.png",
    )
    if regime_extra:
        tracking.log_figure(
            plots.regime_confusion(regime_extra["labels"], regime_extra["model_pred"], REGIME_NAMES),
            "plots/regime_confusion.png",
        )
    if attributions:
        tracking.log_figure(plots.group_attributions(attributions), "plots/attributions.png")
