"""A Python client for trading systems and notebooks: send bars, get forecasts as a DataFrame.

    from adaptive_beta.serving.http_client import BetaClient
    with BetaClient("http://127.0.0.1:3000", key) as c:
        c.send_bars(bars_body)                       # POST /bars (feeder key): the service keeps them
        df = c.forecast(symbols=["SOLUSDT"])         # kept forecasts -> one row per symbol x benchmark
        df = c.forecast(universe=True)               # every asset the store holds
        df = c.forecast(body)                        # stateless: a body with the history

Why requests + urllib3's `Retry` rather than a hand-written loop: backoff with jitter, honouring
`Retry-After` on 429 (rate limits) and 503 (queue full, audit unavailable), and retrying POSTs,
are exactly what `Retry` does and has been hardened for.  Retrying a POST is safe here: a 429 or
503 means the service did not act (nothing was logged), and `/bars` is idempotent per
(series, timestamp).  Other errors are raised at once as typed exceptions carrying the service's
`{"error", "field"}`.  Torch-free and pandas-only, so a trading system can import it alone.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

RETRY_STATUSES = (429, 503)


class ServiceError(Exception):
    """An error answer of the service: HTTP `status`, its `message` and the request `field` it names."""

    status = 0

    def __init__(self, status: int, message: str, field: str | None = None, body: Any = None):
        self.status, self.message, self.field, self.body = status, message, field, body
        where = f" (field {field})" if field else ""
        super().__init__(f"HTTP {status}: {message}{where}")


class BadRequest(ServiceError):
    """400: the body is malformed (JSON, types, shapes)."""


class Unauthorized(ServiceError):
    """401: no key, or an unknown one."""


class Forbidden(ServiceError):
    """403: the key's role may not call this route."""


class NotFound(ServiceError):
    """404: unknown route, record or symbol."""


class Conflict(ServiceError):
    """409: e.g. a bar that differs from the stored one without `restate`."""


class Unprocessable(ServiceError):
    """422: well-formed but unusable for the model (history, gaps, series, plausibility)."""


class RateLimited(ServiceError):
    """429 after every retry."""


class Unavailable(ServiceError):
    """503 after every retry (queue full, audit log unavailable, not ready)."""


ERRORS: dict[int, type[ServiceError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    422: Unprocessable,
    429: RateLimited,
    503: Unavailable,
}


def raise_for_answer(resp) -> None:
    """Raise the typed ServiceError of a non-2xx `requests.Response`."""
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
    except ValueError:
        body = None
    message = body.get("error") if isinstance(body, dict) else None
    field = body.get("field") if isinstance(body, dict) else None
    cls = ERRORS.get(resp.status_code, ServiceError)
    raise cls(resp.status_code, str(message or resp.text[:500] or resp.reason), field, body)


def forecasts_frame(answer: dict) -> pd.DataFrame:
    """A /forecast answer as a tidy DataFrame: one row per (symbol, benchmark) with beta, lo, hi,
    one `p_<regime>` column per regime, as_of (UTC), request_id and the model version."""
    rows = []
    model = answer.get("model", {})
    for f in answer.get("forecasts", []):
        regimes = {f"p_{k}": v for k, v in f.get("regime_probabilities", {}).items()}
        for bench, b in f["betas"].items():
            rows.append(
                {
                    "symbol": f["symbol"],
                    "benchmark": bench,
                    "beta": b["beta"],
                    "lo": b["lo"],
                    "hi": b["hi"],
                    **regimes,
                    "as_of": pd.to_datetime(f["as_of"], utc=True),
                    "request_id": answer.get("request_id"),
                    "model_version": model.get("version"),
                }
            )
    cols = ["symbol", "benchmark", "beta", "lo", "hi"]
    return pd.DataFrame(rows, columns=None if rows else cols)


class BetaClient:
    """A session with the service: one connection pool, the key in every request, retries with
    exponential backoff (and `Retry-After`) on 429 / 503, typed errors otherwise."""

    def __init__(
        self,
        url: str,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 5,
        backoff: float = 0.25,
        backoff_max: float = 10.0,
    ):
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"
        retry = Retry(
            total=retries,
            connect=retries,
            read=0,  # a request that reached the service is not replayed on a read timeout
            status=retries,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,  # POST too: 429/503 mean the service did not act
            backoff_factor=backoff,
            backoff_max=backoff_max,
            backoff_jitter=backoff / 2,
            respect_retry_after_header=True,
            raise_on_status=False,  # the last answer comes back and becomes a typed error
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    # ------------------------------------------------------------------ plumbing
    def request(self, method: str, path: str, body: dict | None = None) -> Any:
        """One call; the decoded JSON answer, or a typed ServiceError."""
        resp = self.session.request(method, self.url + path, json=body, timeout=self.timeout)
        raise_for_answer(resp)
        return resp.json()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> BetaClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ routes
    def model(self) -> dict:
        """GET /model: name, version, required_history, benchmarks, regimes, feature groups."""
        return self.request("GET", "/model")

    @staticmethod
    def _body(body: dict | None, symbols, universe: bool) -> dict:
        """A stateless body as given, or the stored-state form (`symbols` / `universe`)."""
        forms = (body is not None) + (symbols is not None) + bool(universe)
        if forms != 1:
            raise ValueError("give exactly one of body (with history), symbols= or universe=True")
        if body is not None:
            return body
        return {"universe": True} if universe else {"symbols": list(symbols)}

    def forecast_raw(self, body: dict | None = None, *, symbols=None, universe: bool = False) -> dict:
        """POST /forecast: with a full body (assets with history, series) or, from the service's
        market-data store, `symbols=[...]` / `universe=True`; the JSON answer."""
        return self.request("POST", "/forecast", self._body(body, symbols, universe))

    def forecast(self, body: dict | None = None, *, symbols=None, universe: bool = False) -> pd.DataFrame:
        """POST /forecast: the answer as `forecasts_frame` (one row per symbol x benchmark)."""
        return forecasts_frame(self.forecast_raw(body, symbols=symbols, universe=universe))

    def explain(
        self, body: dict | None = None, top_groups: int = 2, *, symbols=None, universe: bool = False
    ) -> dict:
        """POST /explain: forecast plus group Shapley explanations (JSON answer)."""
        return self.request(
            "POST", "/explain", {**self._body(body, symbols, universe), "top_groups": top_groups}
        )

    def send_bars(self, body: dict) -> dict:
        """POST /bars (feeder or admin key): append bars to the service's market-data store; the
        body has the /forecast shape (`assets` with `history`, `series`), optionally `restate`."""
        return self.request("POST", "/bars", body)
