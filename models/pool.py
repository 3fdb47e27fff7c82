"""One bounded, ordered process pool for per-asset-block work (features, baselines).

`concurrent.futures.ProcessPoolExecutor.map` submits every job at once, so finished blocks
wait in memory whenever the consumer falls behind (on a busy 2-core machine the parent is
descheduled while both workers keep finishing blocks): at 200 perps x 2 years hourly the
baselines' parent peaked 520 MB higher with a pool of 2 than in one process.  `ordered_map`
keeps at most `workers` jobs in flight, builds each job's arguments only when it is submitted,
and yields results in job order, so the parent holds at most `workers` blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

__all__ = ["ordered_map"]


def ordered_map(n_jobs: int, make_args: Callable[[int], tuple], fn: Callable, workers: int) -> Iterator:
    """fn(*make_args(k)) for k in range(n_jobs), in order; in a local process pool of `workers`
    (in this process when workers is 1 or there is one job).  `fn` and its arguments must be
    picklable for workers > 1; a worker's exception is raised here when its result is due."""
    if workers == 1 or n_jobs <= 1:
        for k in range(n_jobs):
            yield fn(*make_args(k))
        return
    with ProcessPoolExecutor(max_workers=min(workers, n_jobs)) as pool:
        pending: dict[int, Future] = {}
        done: dict[int, object] = {}
        nxt = 0
        for k in range(n_jobs):
            while nxt < n_jobs and len(pending) + len(done) < workers:
                pending[nxt] = pool.submit(fn, *make_args(nxt))
                nxt += 1
            while k not in done:
                finished, _ = wait(list(pending.values()), return_when=FIRST_COMPLETED)
                for i in [i for i, f in pending.items() if f in finished]:
                    done[i] = pending.pop(i).result()
            yield done.pop(k)
