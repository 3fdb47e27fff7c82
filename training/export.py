"""`export_bundle`: a trained `FitResult` -> a verified, torch-free bundle folder.

The graph is exported with the dynamo exporter (dynamic batch and sequence length), checked
against eager torch on random and on real feature windows (max abs difference <= 1e-5, or the
export fails), then written with its feature spec, normalisation statistics, metadata, model card
and a sha256 manifest.  The folder is assembled in a temporary directory and moved into place
only after the parity check passed, so a failed export never leaves a half-written bundle.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import shutil
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from adaptive_beta.models.bundle.folder import REQUIRED_FILES, load_bundle, write_manifest
from adaptive_beta.models.bundle.meta import SCHEMA_VERSION, BundleMeta, InputSeries
from adaptive_beta.models.data.schema import REGIME_NAMES
from adaptive_beta.models.durations import parse_duration, to_periods
from adaptive_beta.models.features.spec import feature_spec_hash
from adaptive_beta.models.features.windows import window_span

PARITY_ATOL = 1e-5
OPSET = 18


class ExportParityError(RuntimeError):
    """ONNX Runtime and eager torch disagree by more than PARITY_ATOL."""


def _regime_names(n: int) -> list[str]:
    return list(REGIME_NAMES) if len(REGIME_NAMES) == n else [f"regime_{i}" for i in range(n)]


def _durations_in(obj) -> list[str]:
    """Every duration-like string anywhere in a nested dict/list (feature windows, half-lives)."""
    out: list[str] = []
    if isinstance(obj, dict):
        for v in obj.values():
            out += _durations_in(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            out += _durations_in(v)
    elif isinstance(obj, str):
        try:
            parse_duration(obj)
            out.append(obj)
        except ValueError:
            pass
    return out


def warmup_bars(spec, freq) -> int:
    """Bars of raw history a request needs before its window so served features match training.

    `spec.serving_history(freq)` when the spec has it: the EWMA and Welch betas weight the whole
    past, so a request cut to `min_history` bars gives features far from the ones the network saw
    in training (measured on the default spec, daily bars: 181 bars -> rel_ewma off by ~11x; 598
    bars -> base betas within 2e-3).  Otherwise `spec.min_history` (bars, a duration, or a
    callable of freq); otherwise the longest duration named anywhere in the spec (windows,
    half-lives) plus one bar for the first return, a conservative upper bound.
    """
    freq = parse_duration(freq)
    sh = getattr(spec, "serving_history", None)
    if callable(sh):
        mh_fn = getattr(spec, "min_history", None)
        floor = int(mh_fn(freq)) if callable(mh_fn) else 0
        return max(int(sh(freq)), floor)
    mh = getattr(spec, "min_history", None)
    if callable(mh):
        mh = mh(freq)
    if isinstance(mh, int | np.integer):
        return int(mh)
    if isinstance(mh, str):
        return to_periods(mh, freq)
    spec_dict = spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)
    durations = _durations_in(spec_dict)
    longest = max((to_periods(d, freq) for d in durations), default=0)
    return longest + 1


def _export_onnx(net, n_features: int, steps: int, path: Path) -> None:
    """torch.onnx.export (dynamo) with dynamic batch and sequence length; `steps` is informational."""
    import torch
    from torch.export import Dim

    from adaptive_beta.models.networks import OUTPUT_NAMES

    # Example sizes must not equal any fixed size of the net: the exporter otherwise unifies the
    # dynamic dim with that constant (seq = 32 = hidden baked a sequence length of 32 into the graph).
    fixed = {
        n_features,
        net.n_bench,
        net.regime_head.out_features,
        net.delta_head.in_features,
        2 * net.delta_head.in_features,
        1,
    }
    candidates = [p for p in (11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53) if p not in fixed]
    example = torch.zeros(candidates[0], candidates[1], n_features)
    # torch 2.13 bug: after one export in a process, aten.gru's dispatch cache bypasses the exporter's
    # while-loop GRU decomposition and the next export silently bakes in the sequence length.
    for op in (torch.ops.aten.gru.input, torch.ops.aten.lstm.input):
        cache = getattr(op, "_dispatch_cache", None)
        if cache is not None:
            cache.clear()
    quiet = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (example,),
                str(path),
                dynamo=True,
                external_data=False,
                input_names=["x"],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes={"x": {0: Dim("batch"), 1: Dim("seq")}},
                opset_version=OPSET,
                verbose=False,
            )
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)
    check_dynamic_input(path)


def check_dynamic_input(path: Path) -> None:
    """Raise ExportParityError unless the graph input is [batch, seq, F] with symbolic batch and seq."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 3 or not dims[0].dim_param or not dims[1].dim_param:
        shape = [d.dim_param or d.dim_value for d in dims]
        raise ExportParityError(
            f"exported input x has shape {shape}: batch and sequence length must be dynamic"
        )


def parity_check(net, onnx_path: Path, windows: list[np.ndarray], atol: float = PARITY_ATOL) -> float:
    """Max abs difference between ORT and eager torch over all outputs and windows; raise if > atol."""
    import onnxruntime as ort

    from adaptive_beta.training.fit import predict_torch

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in windows:
        ref = predict_torch(net, x)
        got = dict(
            zip(
                [o.name for o in sess.get_outputs()], sess.run(None, {"x": x.astype(np.float32)}), strict=True
            )
        )
        for name, r in ref.items():
            d = np.abs(r.astype(np.float64) - got[name].astype(np.float64))
            both_nan = np.isnan(r) & np.isnan(got[name])
            diff = float(np.max(np.where(both_nan, 0.0, d), initial=0.0))
            if not math.isfinite(diff) or diff > atol:
                raise ExportParityError(
                    f"ONNX parity failed on output {name!r} for input shape {list(x.shape)}: "
                    f"max |ORT - torch| = {diff:.3g} > {atol:g}"
                )
            worst = max(worst, diff)
    return worst


def parity_windows(fit, seed: int = 0) -> list[np.ndarray]:
    """Random raw-scale windows (batch 1 and 7, full and half length, 10 % NaN) plus the fit's real windows."""
    rng = np.random.default_rng(seed)
    f = len(fit.feature_columns)
    base_idx = [fit.feature_columns.index(fit.base_columns[b]) for b in fit.benchmarks]
    out = []
    for b in (1, 7):
        for length in (fit.steps, max(2, fit.steps // 2)):
            x = fit.mean + fit.std * rng.standard_normal((b, length, f))
            x[rng.random(x.shape) < 0.1] = np.nan
            x[:, -1, base_idx] = 1.0 + 0.3 * rng.standard_normal((b, len(base_idx)))
            out.append(x.astype(np.float32))
    if fit.sample_windows is not None and len(fit.sample_windows):
        out.append(np.asarray(fit.sample_windows, dtype=np.float32))
        out.append(np.asarray(fit.sample_windows[:1], dtype=np.float32))
    return out


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=True) + "\n")


def _period(rng) -> dict:
    start, end = (None if v in (None, "None") else str(v) for v in rng)
    return {"start": start, "end": end}


def bundle_meta(fit, spec, meta: dict, parity: float) -> BundleMeta:
    """The typed meta.json of `fit`: geometry and calibration from the fit, `meta` on top.

    meta: BundleMeta fields the fit does not know; `inputs` (the factor series with their
    calendars and lags, see `adaptive_beta.models.bundle.meta.bundle_inputs`) and
    `max_staleness` are required; the benchmarks are added as bar series.  An unknown key is
    an error (pydantic), never a silent extra.
    """
    meta = dict(meta)
    freq = fit.freq
    warm = warmup_bars(spec, freq)
    span = window_span(fit.lookback_bars, fit.stride)
    bars = {b: InputSeries(kind="bar", category="crypto_benchmark") for b in fit.benchmarks}
    inputs = {**bars, **{k: v for k, v in dict(meta.pop("inputs")).items() if k not in bars}}
    metrics = {**fit.metrics, **dict(meta.pop("metrics", {}) or {})}
    body = {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "arch": fit.cfg.arch,
        "benchmarks": list(fit.benchmarks),
        "regimes": _regime_names(fit.cfg.n_regimes),
        "interval_level": fit.cfg.interval_level,
        "calib_scale": [float(v) for v in fit.calib_scale],
        "inputs": inputs,
        "feature_columns": list(fit.feature_columns),
        "feature_groups": {c: fit.groups.get(c, "other") for c in fit.feature_columns},
        "base_columns": dict(fit.base_columns),
        "feature_spec_hash": feature_spec_hash(spec),
        "lookback": fit.cfg.lookback,
        "lookback_bars": int(fit.lookback_bars),
        "stride": int(fit.stride),
        "steps": int(fit.steps),
        "freq": freq,
        "required_history": {
            "frequency": freq,
            "min_periods": int(warm + span),
            "feature_warmup_bars": int(warm),
            "window_bars": int(span),
            "series": list(inputs),
        },
        "training_period": _period(fit.train_range),
        "validation_period": _period(fit.val_range),
        "n_train_windows": int(fit.n_train),
        "n_val_windows": int(fit.n_val),
        "best_epoch": int(fit.best_epoch),
        "history": json.loads(json.dumps(fit.history, default=_json_default)),
        "fit_config": fit.cfg.model_dump(mode="json"),
        "metrics": json.loads(json.dumps(metrics, default=_json_default)),
        "onnx": {"opset": OPSET, "input": "x", "outputs": ["beta", "beta_lo", "beta_hi", "regime_prob"]},
        "parity_max_abs_diff": parity,
    }
    body.update(meta)
    return BundleMeta.model_validate(body)


def export_bundle(
    fit, spec, meta: dict, out_dir: str | Path, model_card: str, overwrite: bool = False
) -> Path:
    """Write the bundle for `fit` into `out_dir` and return its path (verified by `load_bundle`).

    spec: the `FeatureSpec` the features were computed with.  meta: `BundleMeta` fields merged
    into meta.json (`bundle_meta`): `inputs` and `max_staleness` are required (from the training
    panel: `bundle_inputs(panel)`), plus e.g. model_name, run_id, training_period, metrics.
    Raises ExportParityError if ORT and torch disagree, pydantic's ValidationError for a bad meta.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"bundle folder {out} is not empty; pass overwrite=True to replace it")
        shutil.rmtree(out)
    bundle_meta(fit, spec, meta, 0.0)  # a bad meta fails before the slow export
    with tempfile.TemporaryDirectory(prefix="abeta-export-") as tmp:
        stage = Path(tmp) / "bundle"
        stage.mkdir()
        onnx_path = stage / "model.onnx"
        _export_onnx(fit.net, len(fit.feature_columns), fit.steps, onnx_path)
        worst = parity_check(fit.net, onnx_path, parity_windows(fit))
        (stage / "meta.json").write_text(bundle_meta(fit, spec, meta, worst).to_json())
        _write_json(stage / "feature_spec.json", spec.to_dict())
        _write_json(
            stage / "normalization.json",
            {
                "columns": list(fit.feature_columns),
                "mean": [float(v) for v in fit.mean],
                "std": [float(v) for v in fit.std],
                "note": "applied inside model.onnx; the input is raw features",
            },
        )
        (stage / "model_card.md").write_text(model_card if model_card.endswith("\n") else model_card + "\n")
        assert all((stage / f).is_file() for f in REQUIRED_FILES)
        write_manifest(stage)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()
        shutil.move(str(stage), str(out))
    load_bundle(out)  # verifies hashes and required fields
    return out
