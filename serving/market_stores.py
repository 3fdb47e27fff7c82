"""The market-data stores a worker has open (one per URL), shared by its threads.

Its own module because both `serving/endpoints/bars.py` (POST /bars) and `AppState.live_market`
(stored-state forecasts) open the store, and neither may import the other.
"""

from __future__ import annotations

import threading

_STORES: dict[str, object] = {}
_LOCK = threading.Lock()


class StoreUnavailable(RuntimeError):
    """The market-data store cannot be opened or written (503; nothing was stored)."""


def market_store(url: str):
    """The worker's store for `url` (opened once; StoreUnavailable if it cannot be)."""
    from adaptive_beta.models.market.store import open_market_store

    with _LOCK:
        store = _STORES.get(url)
        if store is None:
            try:
                store = _STORES[url] = open_market_store(url)
            except Exception as exc:
                raise StoreUnavailable(f"market-data store {url} cannot be opened: {exc}") from exc
        return store


def close_stores() -> None:
    with _LOCK:
        for store in _STORES.values():
            store.close()
        _STORES.clear()
