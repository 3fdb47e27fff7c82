"""`abeta tune`: Optuna search over the model configuration, scored on validation blocks only.

Why validation and never test: the walk-forward test blocks are the confirmatory evidence; a search
that looked at them would report its own selection bias.  The objective is the pooled validation
beta MSE over the folds (each benchmark's squared errors pooled over every fold's validation rows,
then averaged over benchmarks), i.e. the metric the scorecard ranks on, measured where the fit is
allowed to look.  Each fold's fit already uses its validation block for early stopping, the
correction shrinkage and the interval scale, so the objective is optimistic by the same amount
for every trial (fine for ranking, not a forecast of test error).

Trials are nested MLflow runs under one parent; the study lives in any SQLAlchemy URL (a SQLite
file beside the MLflow store by default) so it resumes and several processes can share it.
Pruning goes through a Lightning callback that reports each epoch's validation beta MSE.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from lightning.pytorch.callbacks import Callback
from pydantic import BaseModel, ConfigDict, Field

from adaptive_beta.training.model_config import ModelConfig
from adaptive_beta.training.pipeline import Prepared, fit_fold, say
from adaptive_beta.training.train_config import TrainConfig


class TuneConfig(BaseModel):
    """How long to search, where the study lives and how trials are pruned."""

    model_config = ConfigDict(extra="forbid")
    n_trials: int | None = Field(20, ge=1)  # None: until the timeout
    timeout: float | None = Field(None, gt=0)  # seconds for this invocation
    storage: str | None = None  # SQLAlchemy URL; None = optuna.db beside the MLflow store
    study_name: str = "adaptive-beta-tune"
    seed: int = 0  # TPE sampler seed: a study with one seed proposes the same trials
    startup_trials: int = Field(5, ge=0)  # trials never pruned (the median needs a few)
    warmup_epochs: int = Field(3, ge=0)  # epochs of each trial's first fold never pruned


def default_storage() -> str:
    """A SQLite file beside the MLflow store when that is SQLite, else in the project's mlruns/."""
    from adaptive_beta.models.bundle.resolve import default_tracking_uri
    from adaptive_beta.models.settings import get_settings

    uri = default_tracking_uri()
    if uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).parent / 'optuna.db'}"
    root = Path(get_settings().mlruns)  # ABETA_MLRUNS, default ABETA_HOME/mlruns
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'optuna.db'}"


def suggest_model(trial, base: ModelConfig) -> ModelConfig:
    """The search space: capacity, regularisation, memory and the loss; the rest stays `base`'s.

    Ranges bracket the defaults (chosen on a simulator of another seed) by a factor of about 3
    each way: wide enough to move, narrow enough for 20-50 trials to cover.
    """
    update = {
        # the last-step MLP competes with the GRU; the transformer stays available but is left
        # out of the search (several times slower per fit on 2 cores)
        "arch": trial.suggest_categorical("arch", ["gru", "mlp"]),
        "hidden": trial.suggest_categorical("hidden", [8, 16, 32]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-3, 1e-1, log=True),
        "lookback": trial.suggest_categorical("lookback", ["32d", "64d", "128d"]),
        "loss": trial.suggest_categorical("loss", ["nll", "mse"]),
        "regime_loss_weight": trial.suggest_float("regime_loss_weight", 0.0, 0.5),
    }
    return ModelConfig.model_validate({**base.model_dump(), **update})


class PruningCallback(Callback):
    """Report each epoch's validation beta MSE to the Optuna trial; prune when it says so.

    Our own (a few lines) rather than optuna-integration's: a trial fits one net per fold, so the
    step must be `fold * epochs + epoch` to stay unique and comparable across trials.
    """

    def __init__(self, trial, fold: int, epochs: int):
        self.trial, self.fold, self.epochs = trial, fold, epochs
        self.reported: set[int] = set()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        mse = pl_module.last_val.get("val_mse", float("nan"))
        step = self.fold * self.epochs + int(trainer.current_epoch)
        if not np.isfinite(mse) or step in self.reported:
            return  # an ensemble's later members repeat the first one's steps
        self.reported.add(step)
        self.trial.report(float(mse), step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"fold {self.fold + 1} epoch {trainer.current_epoch}")


@dataclass
class TrialScore:
    """Pooled validation errors of one configuration over the folds."""

    objective: float  # mean over benchmarks of the pooled validation beta MSE
    mse: dict[str, float]  # benchmark -> pooled validation MSE of the model
    mse_base: dict[str, float]  # benchmark -> pooled validation MSE of the base beta


def pool(fold_metrics: list[dict[str, float]], benchmarks: list[str]) -> TrialScore:
    """Pool per-fold validation RMSEs into MSEs weighted by each fold's validation rows."""
    mse, base = {}, {}
    for b in benchmarks:
        n = np.array([m[f"val_n_{b}"] for m in fold_metrics])
        r = np.array([m[f"val_rmse_{b}"] for m in fold_metrics])
        r0 = np.array([m[f"val_rmse_base_{b}"] for m in fold_metrics])
        mse[b] = float(np.sum(n * r**2) / np.sum(n))
        base[b] = float(np.sum(n * r0**2) / np.sum(n))
    return TrialScore(float(np.mean(list(mse.values()))), mse, base)


def score_config(prep: Prepared, model: ModelConfig, folds, trial=None, trainer=None) -> TrialScore:
    """Fit `model` on every fold's training block and pool its validation errors (test unused);
    `trainer`: the config's `[trainer]` options (TrainerConfig), default Lightning's as in training."""
    import mlflow

    per_fold = []
    for fold in folds:
        callbacks = (PruningCallback(trial, fold.k, model.epochs),) if trial is not None else ()
        fit = fit_fold(prep, model, fold, False, callbacks, trainer)
        per_fold.append(fit.metrics)
        for b in prep.benchmarks:
            mlflow.log_metric(f"val_mse_{b}", fit.metrics[f"val_rmse_{b}"] ** 2, step=fold.k)
    return pool(per_fold, prep.benchmarks)


@dataclass
class TuneResult:
    """What a `run_tune` call leaves: the study's best trial and the config file written."""

    best_value: float
    best_params: dict
    n_trials: int  # trials in the study (all invocations), any state
    n_complete: int
    n_pruned: int
    config_path: Path | None
    parent_run_id: str


def _objective(prep: Prepared, cfg: TrainConfig, folds):
    """One trial = one nested MLflow run: params, per-fold validation MSE, objective, state."""
    import mlflow

    def objective(trial) -> float:
        model = suggest_model(trial, cfg.model)
        t0 = time.perf_counter()
        with mlflow.start_run(run_name=f"trial {trial.number}", nested=True):
            mlflow.log_params({k: str(v) for k, v in trial.params.items()})
            mlflow.set_tag("optuna.trial", trial.number)
            try:
                score = score_config(prep, model, folds, trial, cfg.trainer)
            except optuna.TrialPruned:
                mlflow.set_tag("optuna.state", "PRUNED")
                raise
            mlflow.set_tag("optuna.state", "COMPLETE")
            mlflow.log_metric("objective", score.objective)
            for b in prep.benchmarks:
                mlflow.log_metric(f"pooled_val_mse_{b}", score.mse[b])
                mlflow.log_metric(f"pooled_val_mse_ratio_base_{b}", score.mse[b] / score.mse_base[b])
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            trial.set_user_attr("mse_ratio_base", {b: score.mse[b] / score.mse_base[b] for b in score.mse})
        return score.objective

    return objective


def _progress(progress: bool, total: int | None):
    """Optuna callback: one line per finished trial (state, value, best so far, seconds)."""

    def report(study, trial) -> None:
        done = len(study.trials)
        done_ok = any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
        best = study.best_value if done_ok else float("nan")
        complete = trial.state == optuna.trial.TrialState.COMPLETE
        # a pruned trial's value is its last per-epoch report, not a pooled objective: not shown
        value = f"value {trial.value:.5f}" if complete else f"at step {trial.last_step}"
        of = f"/{total}" if total else ""
        secs = (trial.datetime_complete - trial.datetime_start).total_seconds()
        say(
            f"trial {trial.number} ({done}{of} in study): {trial.state.name.lower()} "
            f"{value}, best {best:.5f}, {secs:.0f}s",
            progress,
        )

    return report


def best_config(cfg: TrainConfig, params: dict) -> dict:
    """The TrainConfig to train with: the caller's settings plus the best trial's model fields.

    Only fields that differ from the defaults are written, so the file reads as a diff; it
    validates as a `TrainConfig` before anyone sees it.
    """
    raw = cfg.model_dump(mode="json", exclude_defaults=True, exclude_none=True)
    raw.pop("progress", None)
    raw["model"] = {**raw.get("model", {}), **params}
    TrainConfig.model_validate(raw)
    return raw


def write_config(raw: dict, path: Path, header: str) -> Path:
    import tomli_w

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + tomli_w.dumps(raw))
    return path


def run_tune(
    cfg: TrainConfig, tune: TuneConfig, out: Path | None = None, prep: Prepared | None = None
) -> TuneResult:
    """Create or resume the study, run trials as nested MLflow runs, write the best config."""
    import mlflow

    from adaptive_beta.training.pipeline import prepare
    from adaptive_beta.training.splits import make_folds
    from adaptive_beta.training.tracking import setup_mlflow

    prep = prep or prepare(cfg)
    folds = make_folds(prep.panel.index, cfg.walk_forward)
    storage = tune.storage or default_storage()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=tune.study_name,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=tune.seed),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=tune.startup_trials, n_warmup_steps=tune.warmup_epochs
        ),
    )
    say(
        f"study {tune.study_name!r} in {storage}: {len(study.trials)} earlier trials, {len(folds)} folds",
        cfg.progress,
    )
    setup_mlflow(f"{cfg.experiment}-tune")
    with mlflow.start_run(run_name=f"tune {tune.study_name}") as parent:
        mlflow.log_params({"study_name": tune.study_name, "storage": storage, "folds": len(folds)})
        study.optimize(
            _objective(prep, cfg, folds),
            n_trials=tune.n_trials,
            timeout=tune.timeout,
            callbacks=[_progress(cfg.progress, tune.n_trials)],
            gc_after_trial=True,
        )
        result = _result(study, cfg, out, parent.info.run_id, storage)
        mlflow.log_metric("best_value", result.best_value)
        if result.config_path is not None:
            mlflow.log_artifact(str(result.config_path))
    return result


def _result(study, cfg: TrainConfig, out: Path | None, run_id: str, storage: str) -> TuneResult:
    states = [t.state for t in study.trials]
    complete = sum(s == optuna.trial.TrialState.COMPLETE for s in states)
    if complete == 0:
        raise ValueError("no trial completed: raise --n-trials or --timeout")
    best = study.best_trial
    path = None
    if out is not None:
        header = (
            f"# abeta tune: study {study.study_name!r} ({storage}), best of {complete} complete trials,\n"
            f"# trial {best.number}: pooled validation beta MSE {best.value:.6f}.\n"
            f"# Train with: abeta train --config {out}\n"
        )
        path = write_config(best_config(cfg, best.params), Path(out), header)
    return TuneResult(
        best_value=float(best.value),
        best_params=dict(best.params),
        n_trials=len(states),
        n_complete=complete,
        n_pruned=sum(s == optuna.trial.TrialState.PRUNED for s in states),
        config_path=path,
        parent_run_id=run_id,
    )
