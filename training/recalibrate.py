"""Recalibration policy: when monitoring says so, retrain on the latest data, register a challenger,
run the promotion gate, and log the decision and its reasons to MLflow.

The decision is a pure function of a `MonitorReport` and a `RecalibrationPolicy` (`decide`).
Triggers:

* **error**: rolling RMSE of completed forecasts above `rmse_ratio` x the scorecard RMSE (on
  at least `min_completed` forecasts) for any benchmark;
* **beta shift**: at least `min_shift_series` (asset, benchmark) series flagged;
* **drift**: mean PSI of a feature group above `psi_threshold`.  By default drift alone does
  not retrain (`drift_alone_triggers=False`): market-wide features (factor returns and vols,
  benchmark vols) are one slow series broadcast to every asset, so two calm windows of a few
  months already differ by PSI 0.4-1.8 on them (measured on the simulator, see
  docs/monitoring.md) while forecast errors stay at 1.0x the scorecard.  Drift is then a
  reason that is logged, and it retrains when error or shift corroborate it, or on its own
  when `drift_alone_triggers=True`.

Every pass is a run in the MLflow experiment `adaptive-beta-monitoring` (PSI table, errors,
shifts, decision, reasons); when it retrains, the same run later records the training run,
the new version (alias `challenger`) and the promotion gate's decision.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from adaptive_beta.training.monitor import MonitorReport

MONITORING_EXPERIMENT = "adaptive-beta-monitoring"


class RecalibrationPolicy(BaseModel):
    """Thresholds that turn a monitoring report into a retrain; defaults run as is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    psi_threshold: float = Field(0.25, gt=0)  # group mean PSI counted as drift
    drift_alone_triggers: bool = False  # True: drift retrains even without error/shift evidence
    rmse_ratio: float = Field(1.5, gt=0)  # k: rolling RMSE > k x scorecard RMSE is an error trigger
    min_completed: int = Field(20, ge=1)  # completed forecasts needed before the error trigger counts
    min_shift_series: int = Field(1, ge=1)  # flagged beta-shift series that trigger
    train_window: str | None = None  # retrain on this much history up to now; None = all history
    promote: bool = True  # run the promotion gate after registering the challenger


@dataclass
class RecalibrationDecision:
    retrain: bool
    reasons: list[str]  # what crossed a threshold (empty: nothing did)
    triggers: dict[str, bool] = field(default_factory=dict)  # drift / error / shift


@dataclass
class RecalibrationOutcome:
    decision: RecalibrationDecision
    monitoring_run_id: str | None
    train_run_id: str | None = None
    version: str | None = None  # registered challenger
    promoted: bool | None = None
    gate_reason: str | None = None
    error: str | None = None  # the retrain failed: why


def decide(report: MonitorReport, policy: RecalibrationPolicy) -> RecalibrationDecision:
    """Whether `report` calls for a retrain under `policy`, and why (pure)."""
    reasons = []
    drift_groups = [(g, v) for g, v in report.group_psi().items() if v == v and v > policy.psi_threshold]
    for g, v in drift_groups:
        reasons.append(f"drift: PSI of {g} {v:.3f} > {policy.psi_threshold}")
    err = [
        e
        for e in report.errors
        if e["n"] >= policy.min_completed and e["ratio"] == e["ratio"] and e["ratio"] > policy.rmse_ratio
    ]
    for e in err:
        reasons.append(
            f"error: {e['benchmark']} rolling RMSE {e['rmse']:.3f} = {e['ratio']:.2f}x scorecard (> {policy.rmse_ratio}x)"
        )
    flagged = report.flagged_shifts()
    shift = len(flagged) >= policy.min_shift_series
    if len(flagged):
        reasons.append(
            f"beta shift: {len(flagged)} series flagged ("
            + ", ".join(f"{r.symbol}/{r.benchmark} {r.direction}" for r in flagged.itertuples())
            + ")"
        )
    triggers = {"drift": bool(drift_groups), "error": bool(err), "shift": bool(shift)}
    retrain = triggers["error"] or triggers["shift"] or (triggers["drift"] and policy.drift_alone_triggers)
    if triggers["drift"] and not retrain:
        reasons.append(
            "drift alone does not retrain (drift_alone_triggers=false): no error or shift evidence"
        )
    return RecalibrationDecision(retrain, reasons, triggers)


def _log_report(report: MonitorReport, policy: RecalibrationPolicy, decision: RecalibrationDecision) -> str:
    import mlflow

    from adaptive_beta.training.tracking import log_json, log_text, setup_mlflow

    setup_mlflow(MONITORING_EXPERIMENT)
    with mlflow.start_run(run_name=f"monitor {report.window.get('until')}") as run:
        mlflow.log_params({f"policy.{k}": str(v) for k, v in policy.model_dump().items()})
        mlflow.log_params({f"monitor.{k}": str(v) for k, v in report.config.model_dump().items()})
        metrics = {f"psi.{g}": v for g, v in report.group_psi().items() if v == v}
        for e in report.errors:
            for k in ("rmse", "ratio", "coverage"):
                if e[k] == e[k] and e[k] is not None:
                    metrics[f"{k}.{e['benchmark']}"] = float(e[k])
        metrics["shift_series_flagged"] = float(len(report.flagged_shifts()))
        mlflow.log_metrics(metrics)
        mlflow.set_tags(
            {
                "model_bundle_sha256": str(report.model.get("bundle_sha256")),
                "model_run_id": str(report.model.get("run_id")),
                "window": json.dumps(report.window),
                "decision": "retrain" if decision.retrain else "no action",
                "reasons": "; ".join(decision.reasons)[:5000] or "nothing crossed a threshold",
            }
        )
        body = report.to_dict()
        log_json(body["psi_groups"], "psi_groups.json")
        log_json(body["psi_features"], "psi_features.json")
        log_json(body, "report.json")
        log_json(asdict(decision), "decision.json")
        log_text(report.table(), "report.txt")
        return run.info.run_id


def recalibrate(
    report: MonitorReport,
    policy: RecalibrationPolicy | None = None,
    train_cfg=None,
    panel=None,
    until=None,
) -> RecalibrationOutcome:
    """Decide, log, and if needed retrain with `adaptive_beta.training.train_run.train` on data up to `until`.

    train_cfg: the TrainConfig of the retrain (its `data` names the dataset; `panel`, if given,
    is that dataset already loaded).  The panel is cut to [until - train_window, until].
    """
    import mlflow
    import pandas as pd

    from adaptive_beta.models.durations import parse_duration

    policy = policy or RecalibrationPolicy()
    decision = decide(report, policy)
    run_id = _log_report(report, policy, decision)
    outcome = RecalibrationOutcome(decision, run_id)
    if not decision.retrain:
        return outcome
    if train_cfg is None:
        raise ValueError("a retrain was triggered but no TrainConfig was given")
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.training.train_run import train

    try:
        data = panel if panel is not None else load_dataset(train_cfg.data)
        end = pd.Timestamp(until) if until is not None else data.index[-1]
        start = None if policy.train_window is None else end - parse_duration(policy.train_window)
        cfg = train_cfg.model_copy(update={"register_model": True, "promote": policy.promote})
        result = train(cfg, panel=data.slice(start, end))
        outcome.train_run_id = result.run_id
        outcome.version = result.version
        if result.promotion is not None:
            outcome.promoted = bool(result.promotion.promoted)
            outcome.gate_reason = result.promotion.reason
    except Exception as exc:  # the decision stays logged; the failure is recorded next to it
        outcome.error = f"{type(exc).__name__}: {exc}"
    from adaptive_beta.training.tracking import setup_mlflow

    setup_mlflow(MONITORING_EXPERIMENT)
    with mlflow.start_run(run_id=run_id):
        tags = {
            "retrain_run_id": str(outcome.train_run_id),
            "challenger_version": str(outcome.version),
            "promoted": str(outcome.promoted),
            "gate_reason": str(outcome.gate_reason)[:5000],
        }
        if outcome.error:
            tags["retrain_error"] = outcome.error[:5000]
        mlflow.set_tags(tags)
        mlflow.log_dict(asdict(outcome), "outcome.json")
    setup_mlflow()
    return outcome
