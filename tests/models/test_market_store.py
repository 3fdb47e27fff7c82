"""The market-data store (models/market/): append rules, persistence, reads and the content hash,
on SQLite and on a throwaway PostgreSQL server (skipped without the server binaries)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adaptive_beta.models.market.bars import MarketDataError, SeriesBars
from adaptive_beta.models.market.store import open_market_store
from adaptive_beta.models.market.window import content_sha256
from tests.serving.test_audit_pg import pg_server, pg_url  # noqa: F401 (fixtures: a real PostgreSQL)

H8 = 8 * 3600 * 1_000_000
T0 = int(pd.Timestamp("2026-01-01", tz="UTC").value // 1000)


def asset(name, start, n, close0=100.0, freq=H8, step=1.0):
    us = T0 + np.arange(start, start + n, dtype=np.int64) * freq
    close = close0 + step * np.arange(start, start + n, dtype=np.float64)
    cols = {
        "close": close,
        "volume": np.full(n, 1e6),
        "funding_rate": np.full(n, 1e-4),
        "open_interest": np.full(n, np.nan),
    }
    return SeriesBars(name, "asset", us, cols, freq)


def factor(name, days):
    us = np.array([T0 + d * 86_400_000_000 for d in days], dtype=np.int64)
    return SeriesBars(name, "series", us, {"close": 500.0 + np.asarray(days, dtype=float)}, None)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "market.db")
    return request.getfixturevalue("pg_url")


def test_append_is_idempotent_and_persists_across_reopen(url):
    with open_market_store(url) as store:
        first = store.append([asset("SOLUSDT", 0, 10), factor("SPY", [0, 1, 2, 5])])
        assert (first.counts["SOLUSDT"].appended, first.counts["SPY"].appended) == (10, 4)
        again = store.append([asset("SOLUSDT", 5, 6)])  # bars 5..9 stored, bar 10 new
        c = again.counts["SOLUSDT"]
        assert (c.appended, c.duplicate, c.restated) == (1, 5, 0)
        assert c.last_us == T0 + 10 * H8
    with open_market_store(url) as store:  # a restart (or another process) sees the same state
        info = {i.name: i for i in store.info()}
        assert (info["SOLUSDT"].n_bars, info["SOLUSDT"].first_us, info["SOLUSDT"].last_us) == (
            11,
            T0,
            T0 + 10 * H8,
        )
        assert (info["SPY"].n_bars, info["SPY"].freq_us) == (4, None)
        us, cols = store.bars("SOLUSDT", last=3)
        assert us.tolist() == [T0 + k * H8 for k in (8, 9, 10)]
        assert cols["close"].tolist() == [108.0, 109.0, 110.0]
        assert np.isnan(cols["open_interest"]).all() and cols["volume"].tolist() == [1e6] * 3


def test_different_value_is_refused_and_nothing_changes(url):
    with open_market_store(url) as store:
        store.append([asset("SOLUSDT", 0, 5)])
        before = store.window(["SOLUSDT"], [], last=10).sha256
        changed = asset("SOLUSDT", 3, 3, close0=100.5)  # bars 3, 4 differ; bar 5 would be new
        with pytest.raises(MarketDataError) as err:
            store.append([asset("ETHUSDT", 0, 2), changed])
        assert err.value.status == 409 and err.value.series == "SOLUSDT"
        assert "2026-01-02T00:00:00+00:00" in str(err.value) and "restate" in str(err.value)
        assert store.window(["SOLUSDT"], [], last=10).sha256 == before
        assert [i.name for i in store.info()] == ["SOLUSDT"]  # ETHUSDT of the same append: not stored


def test_restatement_replaces_the_bar_reports_old_and_new_and_changes_the_hash(url):
    with open_market_store(url) as store:
        store.append([asset("SOLUSDT", 0, 5)])
        before = store.window(["SOLUSDT"], [], last=5)
        assert store.window(["SOLUSDT"], [], last=5).sha256 == before.sha256  # stable
        seen = []
        res = store.append([asset("SOLUSDT", 4, 1, close0=99.0)], restate=True, on_restate=seen.append)
        assert res.counts["SOLUSDT"].restated == 1 and res.counts["SOLUSDT"].appended == 0
        (r,) = seen[0]
        assert (r.series, r.ts_us, r.old["close"], r.new["close"]) == ("SOLUSDT", T0 + 4 * H8, 104.0, 103.0)
        after = store.window(["SOLUSDT"], [], last=5)
        assert after.sha256 != before.sha256 and after.assets["SOLUSDT"][1]["close"][-1] == 103.0


def test_restatement_whose_audit_fails_stores_nothing(url):
    def fail(_):
        raise RuntimeError("audit log down")

    with open_market_store(url) as store:
        store.append([asset("SOLUSDT", 0, 5)])
        with pytest.raises(RuntimeError):
            store.append([asset("SOLUSDT", 4, 2, close0=99.0)], restate=True, on_restate=fail)
        us, cols = store.bars("SOLUSDT")
        assert len(us) == 5 and cols["close"][-1] == 104.0


def test_gap_and_out_of_order_name_the_series_and_timestamp(url):
    with open_market_store(url) as store:
        store.append([asset("SOLUSDT", 0, 5), factor("SPY", [0, 3])])
        with pytest.raises(MarketDataError) as gap:
            store.append([asset("SOLUSDT", 6, 1)])  # bar 5 missing
        assert gap.value.status == 409 and gap.value.ts_us == T0 + 6 * H8
        assert "SOLUSDT" in str(gap.value) and "2026-01-03T00:00:00+00:00" in str(gap.value)
        assert "gap" in str(gap.value)
        with pytest.raises(MarketDataError) as late:
            store.append([factor("SPY", [2])])  # older than the last (day 3), never stored
        assert "out of order" in str(late.value) and "SPY" in str(late.value)
        assert "2026-01-03T00:00:00+00:00" in str(late.value)
        ok = store.append([factor("SPY", [3, 7])])  # irregular series: no gap rule, order only
        assert (ok.counts["SPY"].duplicate, ok.counts["SPY"].appended) == (1, 1)


def test_kind_frequency_and_jump_are_checked_against_the_stored_series(url):
    with open_market_store(url) as store:
        store.append([asset("SOLUSDT", 0, 3)])
        with pytest.raises(MarketDataError, match="stored as an asset"):
            store.append(
                [SeriesBars("SOLUSDT", "series", np.array([T0 + 3 * H8]), {"close": np.array([1.0])}, H8)]
            )
        with pytest.raises(MarketDataError, match="stored as 8h bars, these are 1h bars"):
            store.append([asset("SOLUSDT", 0, 3, freq=3600 * 1_000_000)])
        with pytest.raises(MarketDataError) as jump:
            store.append([asset("SOLUSDT", 3, 1, close0=5000.0)], max_jump=10.0)
        assert jump.value.status == 422 and "implausible jump" in str(jump.value)


def test_window_feeds_the_panel_and_hashes_exactly_the_bars_returned(url):
    with open_market_store(url) as store:
        store.append(
            [asset("SOLUSDT", 0, 30), asset("BTCUSDT", 0, 30, close0=50.0), factor("SPY", range(0, 12))]
        )
        store.append(
            [SeriesBars("CRYPTO_EW", "series", asset("X", 0, 30).us, {"close": np.linspace(1, 2, 30)}, H8)]
        )
        w = store.window(["SOLUSDT", "BTCUSDT"], ["CRYPTO_EW", "SPY"], last=9)
        assert [len(w.assets[s][0]) for s in ("SOLUSDT", "BTCUSDT")] == [9, 9]
        assert len(w.series["CRYPTO_EW"][0]) == 9
        # bars 21..29 = day 7 00:00 .. day 9 16:00: factor points from a week earlier (day 0) to
        # the last bar's close (day 10 00:00, excluded, as panel_frame_from_panel cuts them)
        assert w.series["SPY"][0].tolist() == [T0 + d * 86_400_000_000 for d in range(0, 10)]
        assert (w.first_us, w.last_us) == (T0, T0 + 29 * H8)
        assert w.ranges()["SOLUSDT"] == {
            "n": 9,
            "first": "2026-01-08T00:00:00+00:00",
            "last": "2026-01-10T16:00:00+00:00",
        }
        assert w.sha256 == content_sha256(w.assets, w.series)
        w2 = store.window(["SOLUSDT", "BTCUSDT"], ["CRYPTO_EW", "SPY"], last=9, end_us=T0 + 28 * H8)
        assert w2.sha256 != w.sha256 and w2.last_us == T0 + 28 * H8
        with pytest.raises(Exception, match="DOGEUSDT"):
            store.window(["DOGEUSDT"], [], last=3)


def test_two_writers_appending_the_same_bars_at_once_store_them_once(url):
    """Two store objects (two connections, as two replicas) race on the same 200 bars."""
    import threading

    with open_market_store(url) as a, open_market_store(url) as b:
        a.append([asset("SOLUSDT", 0, 1)])
        results, errors = [], []

        def feed(store):
            try:
                for k in range(1, 201, 20):
                    results.append(store.append([asset("SOLUSDT", k, 20)]).counts["SOLUSDT"])
            except Exception as exc:  # pragma: no cover - the assertion below reports it
                errors.append(exc)

        threads = [threading.Thread(target=feed, args=(s,)) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sum(c.appended for c in results) == 200 and sum(c.duplicate for c in results) == 200
        (info,) = a.info()
        assert (info.n_bars, info.last_us) == (201, T0 + 200 * H8)
        assert len(b.bars("SOLUSDT")[0]) == 201
