"""The walk-forward's fits as Ray tasks: one task per fold x ensemble member.

The dense training arrays (`fit.fit_data`: feature cube, targets, regimes, window ends) are the
same for every fold of one model config, so they are built once and put in the object store once;
each task receives the reference (numpy arrays are read from shared memory, not copied or re-read)
and fits one member with `fit.fit_member`, the same steps, seed and torch thread count as the
in-process loop.  The driver collects the members in (fold, member) order and finishes each fold
with `fit_model(members=...)`, so predictions and the scorecard are the in-process ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from adaptive_beta.training.model_config import ModelConfig
from adaptive_beta.training.trainer_config import TrainerConfig


@dataclass
class ClusterTimings:
    """Where a Ray walk-forward spends its time besides fitting (the benchmark prints these)."""

    connect_s: float = 0.0  # ray.init (starting a private cluster, or joining one)
    put_s: float = 0.0  # building the arrays and ray.put once
    put_mb: float = 0.0  # size of what was put
    tasks: int = 0
    task_s: list[float] = field(default_factory=list)  # seconds inside each task (fit only)
    wall_s: float = 0.0  # first submit to last result


def _timed_fit_member(*args):
    """`fit_member` and the seconds it took inside the worker (task overhead = wall - these)."""
    from adaptive_beta.training.fit import fit_member

    t0 = time.perf_counter()
    out = fit_member(*args)
    return out, time.perf_counter() - t0


def fit_members_on_ray(
    prep,
    model: ModelConfig,
    folds,
    trainer: TrainerConfig | None,
    timings: ClusterTimings | None = None,
) -> dict[int, list]:
    """Fold k -> its `n_members` `MemberFit`s, fitted as Ray tasks on the connected cluster."""
    import ray

    from adaptive_beta.training.fit import fit_data

    timings = timings if timings is not None else ClusterTimings()
    t0 = time.perf_counter()
    data = fit_data(
        prep.features, prep.targets, prep.regimes, prep.benchmarks, model, prep.panel.freq, prep.panel.index
    )
    data_ref = ray.put(data)  # once: every task reads the same shared-memory arrays
    timings.put_s = time.perf_counter() - t0
    timings.put_mb = (data.cube.nbytes + data.y.nbytes + data.pairs.nbytes) / 1e6
    task = ray.remote(num_cpus=1, max_retries=0)(_timed_fit_member)
    t1 = time.perf_counter()
    refs = {
        (fold.k, m): task.remote(
            data_ref,
            (fold.train_start, fold.train_end),
            (fold.val_start, fold.val_end),
            model,
            m,
            prep.regimes is not None,
            trainer,
        )
        for fold in folds
        for m in range(model.n_members)
    }
    out: dict[int, list] = {}
    for fold in folds:
        got = ray.get([refs[(fold.k, m)] for m in range(model.n_members)])
        out[fold.k] = [member for member, _ in got]
        timings.task_s += [secs for _, secs in got]
    timings.wall_s = time.perf_counter() - t1
    timings.tasks = len(refs)
    return out
