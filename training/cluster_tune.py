"""`abeta tune --ray-address`: the same search as `tune.run_tune`, as Ray Tune trials.

Ray Tune runs the trials (as many at once as the cluster has CPUs), Optuna's TPE proposes them
(`OptunaSearch` with `tune.suggest_model`'s define-by-run space, so the parameters are the
in-process ones, in the same `--storage` / `--study-name` study, which resumes) and ASHA stops the weak ones early on the per-epoch validation beta MSE, at the
same step (`fold * epochs + epoch`) the in-process median pruner uses.  The objective is the same
pooled validation MSE (`tune.score_config`'s pooling), reported once at the end of a trial; a trial
ASHA stopped never reports it and is recorded as pruned.  Each trial is a nested MLflow run under the tune
parent run (Ray's `MLflowLoggerCallback` on the driver), and the best config is written by
`tune.write_config` exactly like the in-process search, so `abeta train --config` reproduces it.

Ray Tune's own files (results, trial folders) go to a scratch folder, never the checkout.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import optuna

from adaptive_beta.training.model_config import ModelConfig
from adaptive_beta.training.pipeline import Prepared, fit_fold, say
from adaptive_beta.training.train_config import TrainConfig
from adaptive_beta.training.tune import TuneConfig, TuneResult, best_config, pool, suggest_model, write_config

STEP = "step"  # ASHA's time axis: fold * epochs + epoch, as in-process pruning
# per epoch: that epoch's validation beta MSE (what ASHA compares, Optuna's intermediate value);
# in a trial's last report: the pooled validation beta MSE over the folds (what Optuna minimises)
OBJECTIVE = "objective"
FINAL = "all_folds"  # 1 in the last report only: the trial ran every fold


def _reporter(fold: int, epochs: int):
    """A Lightning callback reporting each epoch's validation beta MSE to Ray Tune."""
    from lightning.pytorch.callbacks import Callback
    from ray import tune

    class Report(Callback):
        def __init__(self):
            self.reported: set[int] = set()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            mse = pl_module.last_val.get("val_mse", float("nan"))
            step = fold * epochs + int(trainer.current_epoch)
            if np.isfinite(mse) and step not in self.reported:  # later members repeat steps
                self.reported.add(step)
                tune.report({OBJECTIVE: float(mse), STEP: step})

    return Report()


def trial(config: dict, prep: Prepared, base: ModelConfig, folds, trainer) -> None:
    """One Ray Tune trial: the proposed model fields on every fold, then the pooled objective."""
    from ray import tune

    model = ModelConfig.model_validate({**base.model_dump(), **config})
    per_fold = []
    for fold in folds:
        fit = fit_fold(prep, model, fold, False, (_reporter(fold.k, model.epochs),), trainer)
        per_fold.append(fit.metrics)
    score = pool(per_fold, prep.benchmarks)
    # no step here: ASHA ignores this last report, Optuna records its objective
    tune.report(
        {
            OBJECTIVE: score.objective,
            FINAL: 1,
            **{f"pooled_val_mse_{b}": score.mse[b] for b in prep.benchmarks},
            **{f"pooled_val_mse_ratio_base_{b}": score.mse[b] / score.mse_base[b] for b in prep.benchmarks},
        }
    )


class _Space:
    """Optuna define-by-run space: exactly `suggest_model`'s parameters (the trial config).  A
    class, not a closure, because Ray Tune pickles the searcher into its experiment state."""

    def __init__(self, base: ModelConfig):
        self.base = base

    def __call__(self, ot_trial) -> None:
        suggest_model(ot_trial, self.base)


def _search_class():
    """OptunaSearch that records a trial ASHA stopped as PRUNED: its last report is an epoch's
    validation MSE, not the pooled objective, and must not compete with finished trials."""
    from ray.tune.search.optuna import OptunaSearch

    class Search(OptunaSearch):
        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            if result is not None and not result.get(FINAL):
                result = None  # no value and no error: OptunaSearch tells the study PRUNED
            super().on_trial_complete(trial_id, result, error)

    return Search


def _mlflow_callback(experiment: str, parent_run_id: str):
    """Ray's MLflow logger, each trial a nested run of the tune parent, tagged with its state."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    from adaptive_beta.models.bundle.resolve import default_tracking_uri

    class TrialRuns(MLflowLoggerCallback):
        def log_trial_end(self, trial, failed: bool = False):
            state = "FAILED" if failed else ("COMPLETE" if trial.last_result.get(FINAL) else "PRUNED")
            self.mlflow_util._get_client().set_tag(self._trial_runs[trial], "optuna.state", state)
            super().log_trial_end(trial, failed)

    return TrialRuns(
        tracking_uri=default_tracking_uri(),
        experiment_name=experiment,
        tags={"mlflow.parentRunId": parent_run_id, "abeta.kind": "tune trial"},
    )


def _tuner(prep: Prepared, cfg: TrainConfig, folds, settings: TuneConfig, storage_path: Path, callback):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from adaptive_beta.training.tune import default_storage

    max_t = len(folds) * cfg.model.epochs
    return tune.Tuner(
        tune.with_parameters(trial, prep=prep, base=cfg.model, folds=folds, trainer=cfg.trainer),
        tune_config=tune.TuneConfig(
            search_alg=_search_class()(
                space=_Space(cfg.model),
                metric=OBJECTIVE,
                mode="min",
                sampler=optuna.samplers.TPESampler(seed=settings.seed),
                study_name=settings.study_name,
                storage=optuna.storages.RDBStorage(settings.storage or default_storage()),
            ),
            scheduler=ASHAScheduler(
                time_attr=STEP,
                metric=OBJECTIVE,
                mode="min",
                max_t=max_t,
                grace_period=max(1, settings.warmup_epochs),
                reduction_factor=3,
            ),
            num_samples=settings.n_trials or -1,
            time_budget_s=settings.timeout,
        ),
        run_config=tune.RunConfig(
            name=settings.study_name,
            storage_path=str(storage_path),
            callbacks=[callback],
            verbose=0,
        ),
    )


def run_tune_ray(
    cfg: TrainConfig,
    settings: TuneConfig,
    address: str,
    out: Path | None = None,
    prep: Prepared | None = None,
    storage_path: Path | None = None,
) -> TuneResult:
    """Search on the Ray cluster at `address`; write the best config like `tune.run_tune`."""
    import mlflow

    from adaptive_beta.training.cluster import ray_session
    from adaptive_beta.training.pipeline import prepare
    from adaptive_beta.training.splits import make_folds
    from adaptive_beta.training.tracking import setup_mlflow
    from adaptive_beta.training.tune import default_storage

    prep = prep or prepare(cfg)
    folds = make_folds(prep.panel.index, cfg.walk_forward)
    storage_path = Path(storage_path or tempfile.mkdtemp(prefix="abeta-ray-tune-")).resolve()
    experiment = f"{cfg.experiment}-tune"
    setup_mlflow(experiment)
    with ray_session(address), mlflow.start_run(run_name=f"tune {settings.study_name} (ray)") as parent:
        mlflow.log_params(
            {
                "study_name": settings.study_name,
                "storage": settings.storage or default_storage(),
                "folds": len(folds),
                "ray_address": address,
            }
        )
        say(
            f"Ray Tune at {address}: {settings.n_trials} trials, {len(folds)} folds, results in {storage_path}",
            cfg.progress,
        )
        callback = _mlflow_callback(experiment, parent.info.run_id)
        grid = fit_tuner(_tuner(prep, cfg, folds, settings, storage_path, callback), cfg.progress)
        result = _result(grid, cfg, settings, out, parent.info.run_id)
        mlflow.log_metric("best_value", result.best_value)
        if result.config_path is not None:
            mlflow.log_artifact(str(result.config_path))
    return result


def fit_tuner(tuner, progress: bool):
    """`tuner.fit()`; without progress (`--quiet`), Ray Tune's own terminal output is dropped:
    its reporter prints the experiment's configuration table whatever `verbose` says (Ray 2.60),
    and `--quiet` promises no progress output.  Trial errors still reach the result grid and the
    log (stderr)."""
    if progress:
        return tuner.fit()
    with contextlib.redirect_stdout(io.StringIO()):
        return tuner.fit()


def _result(grid, cfg: TrainConfig, settings: TuneConfig, out, run_id: str) -> TuneResult:
    """Best of the trials that finished every fold (those ASHA stopped have no objective)."""
    results = list(grid)
    done = [r for r in results if r.error is None and (r.metrics or {}).get(FINAL)]
    failed = [r for r in results if r.error is not None]
    if not done:
        raise ValueError(f"no trial completed ({len(failed)} failed): raise --n-trials or --timeout")
    best = min(done, key=lambda r: r.metrics[OBJECTIVE])
    params = {k: best.config[k] for k in sorted(best.config)}
    path = None
    if out is not None:
        header = (
            f"# abeta tune --ray-address: study {settings.study_name!r}, best of {len(done)} complete trials,\n"
            f"# pooled validation beta MSE {best.metrics[OBJECTIVE]:.6f}.\n"
            f"# Train with: abeta train --config {out}\n"
        )
        path = write_config(best_config(cfg, params), Path(out), header)
    return TuneResult(
        best_value=float(best.metrics[OBJECTIVE]),
        best_params=params,
        n_trials=len(results),
        n_complete=len(done),
        n_pruned=len(results) - len(done) - len(failed),
        config_path=path,
        parent_run_id=run_id,
    )
