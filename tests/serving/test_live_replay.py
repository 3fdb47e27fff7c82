"""The start-up replay in a child process (serving/live_replay.py) builds the live state the
in-process replay builds: the same feature state, ring and forecasts (within 1e-9), the same
window hash; a failing replay is an error that says why.  In-process AppState on the tiny bundle,
a real SQLite store; the child is a real `python -m` process."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive_beta.models.bundle.live import LiveModelState
from adaptive_beta.serving.bars_schemas import BarsRequest
from adaptive_beta.serving.endpoints.bars import bars
from adaptive_beta.serving.live_replay import ReplayFailed, replay, replay_in_child
from adaptive_beta.serving.market_stores import market_store


def test_the_child_replay_equals_the_in_process_replay(inproc_state, tiny_body):
    st = inproc_state
    out = bars(st, BarsRequest.model_validate(tiny_body), "feed")  # builds the live state (child)
    live = st.live
    new = live.model
    assert out["forecasts"]["updated"] == len(tiny_body["assets"]) == len(new.latest)
    store = market_store(st.market_db)
    last = max(i.n_bars for i in store.info())
    window = store.window(live.assets, live.read_series, last)
    panel = window.panel(st.bundle.meta)
    old = LiveModelState.from_panel(panel, st.bundle, st.predict, list(st.groups.values()))
    assert live.sha256 == window.sha256 and live.first_us == panel.index[0].value // 1000
    assert sorted(new.latest) == sorted(old.latest)
    np.testing.assert_array_equal(new.ring, old.ring)  # NaN where no close, in both
    np.testing.assert_array_equal(new.last_row, old.last_row)
    assert (new.filled, new.head) == (old.filled, old.head)
    np.testing.assert_array_equal(new.bars_listed, old.bars_listed)
    for sym, f in old.latest.items():
        g = new.latest[sym]
        assert g.as_of == f.as_of
        for name in ("beta", "lo", "hi", "regime_prob", "phi", "base", "full"):
            np.testing.assert_allclose(getattr(g, name), getattr(f, name), rtol=0, atol=1e-9)
        np.testing.assert_allclose(g.row, f.row, rtol=0, atol=1e-9, equal_nan=True)
        assert np.abs(f.phi.sum(axis=0) - (f.beta - f.base)).max() <= 1e-6  # adds up to the forecast
    # the restored feature state advances as the replayed one does
    snap = old.snapshot()
    again = LiveModelState.restore(snap, st.bundle, st.predict, list(st.groups.values()))
    assert again.engine.to_bytes() == old.engine.to_bytes()


def test_a_failing_replay_says_why(inproc_state, tmp_path):
    st = inproc_state
    missing = str(tmp_path / "no-such-bundle")
    with pytest.raises(ReplayFailed, match="replay process failed: .*no-such-bundle"):
        replay_in_child(st.market_db, missing, ["ETHUSDT"], [], 10)


def test_a_snapshot_of_another_shape_is_refused(inproc_state, tiny_body):
    st = inproc_state
    bars(st, BarsRequest.model_validate(tiny_body), "feed")
    snap = dict(st.live.model.snapshot())
    snap["ring"] = snap["ring"][:-1]
    with pytest.raises(ValueError, match="saved ring"):
        LiveModelState.restore(snap, st.bundle, st.predict, list(st.groups.values()))


def test_when_the_child_fails_the_worker_replays_in_process(inproc_state, tiny_body, tmp_path, caplog):
    st = inproc_state
    bars(st, BarsRequest.model_validate(tiny_body), "feed")
    live = st.live
    store = market_store(st.market_db)
    last = max(i.n_bars for i in store.info())
    child, facts = replay(store, st.bundle, st.market_db, live.assets, live.read_series, last)
    unreachable = str(tmp_path / "no-such-folder" / "market.db")  # the child cannot open this URL
    with caplog.at_level("WARNING", logger="adaptive_beta.serving.live_replay"):
        local, local_facts = replay(store, st.bundle, unreachable, live.assets, live.read_series, last)
    assert "replay process failed" in caplog.text and "replaying in this worker instead" in caplog.text
    assert local_facts == facts == {"first_us": live.first_us, "sha256": live.sha256}
    assert sorted(local) == sorted(child)
    for k in child:
        np.testing.assert_array_equal(local[k], child[k])
