"""The start-up replay of the market-data store, in a short-lived child process.

Why a process: replaying two years of bars (the stored window, its Panel, ~2,200 incremental
feature steps of 200 assets) allocates far more than the live state it leaves (~65 MiB for 200
assets of the 8h model), and the C heap does not give those pages back (`malloc_trim` returned
~20 MiB of ~230).  The worker therefore runs `python -m adaptive_beta.serving.live_replay` on
the same store URL and bundle folder; the child reads the window, replays it with the very
`LiveModelState.from_panel` the in-process path used (without forecasts: it has no model
session) and writes `LiveModelState.snapshot()` plus the window's `sha256` and first bar to one
`.npz`; the worker restores it (`LiveModelState.restore`) and computes the forecasts itself.
What the replay allocated goes away with the child.  The child sees the store as the worker
would at that moment (one read transaction per series, as in-process); the worker then catches
up from the store as usual, so bars stored meanwhile are appended after the restore.

Torch-free; the child imports what the worker imports (numpy, pandas, the feature engine).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
REPLAY_TIMEOUT_S = 1800.0  # a 2-year store of 200 assets replays in ~10-35 s on 2 cores


class ReplayFailed(RuntimeError):
    """The replay process failed (its last stderr line says why)."""


def replay_arrays(store, bundle, assets: list[str], series: list[str], last: int) -> dict:
    """The replay itself (in the child; in the worker only as the fall-back): the snapshot
    arrays of `store`'s last `last` bars, plus `facts` (the window's first bar and `sha256`)."""
    from adaptive_beta.models.bundle.live import LiveModelState
    from adaptive_beta.models.bundle.shapley import bundle_groups

    window = store.window(assets, series, last)
    panel = window.panel(bundle.meta)
    groups = list(bundle_groups(bundle.meta).values())
    state = LiveModelState.from_panel(panel, bundle, None, groups, forecast=False)
    facts = {"first_us": int(panel.index[0].value // 1000), "sha256": window.sha256}
    return {**state.snapshot(), "facts": np.frombuffer(json.dumps(facts).encode(), dtype=np.uint8)}


def replay(
    store, bundle, market_db: str, assets: list[str], series: list[str], last: int
) -> tuple[dict, dict]:
    """(snapshot arrays, facts) from a child process; if the child cannot run or fails, the same
    replay in this process (logged: its memory then stays in the worker, and a data error is
    raised here as the in-process replay always raised it)."""
    try:
        return replay_in_child(market_db, str(bundle.path), assets, series, last)
    except ReplayFailed as exc:
        log.warning("%s; replaying in this worker instead", exc)
    arrays = replay_arrays(store, bundle, assets, series, last)
    return arrays, json.loads(arrays.pop("facts").tobytes())


def replay_in_child(
    market_db: str, bundle_path: str, assets: list[str], series: list[str], last: int
) -> tuple[dict[str, np.ndarray], dict]:
    """(snapshot arrays, {"first_us", "sha256"}) from a child process (ReplayFailed if it fails)."""
    with tempfile.TemporaryDirectory(prefix="abeta-replay-") as tmp:
        out = Path(tmp) / "state.npz"
        spec = Path(tmp) / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "market_db": market_db,
                    "bundle": bundle_path,
                    "assets": assets,
                    "series": series,
                    "last": last,
                }
            )
        )
        cmd = [sys.executable, "-m", "adaptive_beta.serving.live_replay", str(spec), str(out)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=REPLAY_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ReplayFailed(f"the replay process did not complete: {exc}") from exc
        if done.returncode != 0 or not out.exists():
            lines = (done.stderr or "").strip().splitlines() or [f"exit status {done.returncode}"]
            raise ReplayFailed(f"the replay process failed: {lines[-1]}")
        with np.load(out, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    facts = json.loads(arrays.pop("facts").tobytes())
    return arrays, facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Replay the market-data store into a live-state snapshot.")
    ap.add_argument("spec", help="JSON file: market_db, bundle, assets, series, last")
    ap.add_argument("out", help="the .npz to write")
    args = ap.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.market.store import open_market_store

    bundle = load_bundle(spec["bundle"])
    with open_market_store(spec["market_db"]) as store:
        arrays = replay_arrays(store, bundle, spec["assets"], spec["series"], int(spec["last"]))
    tmp = Path(args.out).with_suffix(".part.npz")
    np.savez(tmp, **arrays)
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
