"""The service and its audit trail from Python: serve calls without HTTP, read, verify, export, report.

Why a layer: a compliance review follows a served forecast into the log and out to a report.
`LocalService` is the object each BentoML worker holds (`AppState`) with the `/forecast` and
`/explain` endpoint functions, so every call is validated, answered and appended to the audit
log exactly as over HTTP; the other functions are the library calls behind `abeta audit ...`.
Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from adaptive_beta.api import _panel


class LocalService:
    """The service's per-worker state and endpoints, in process: `forecast` and `explain` answer
    as the HTTP service would and log each call to the audit log at `audit_db` before returning.

    `model`: a bundle folder or registry URI (`models:/adaptive-beta@champion`); `audit_db`: a
    SQLite path or `postgresql://` URL.  Close it (or use `with`) to release the log.
    """

    def __init__(self, model: str | Path, audit_db: str | Path, **serve_config: Any) -> None:
        from adaptive_beta.serving.app_state import AppState, ServeConfig

        self.state = AppState.load(ServeConfig(model=str(model), audit_db=str(audit_db), **serve_config))
        self._factors: dict[str, dict] = {}

    @property
    def required(self) -> dict:
        """The history a request must carry (`GET /model`'s `required_history`)."""
        return self.state.required

    def model_info(self) -> dict:
        """What `GET /model` answers: name, version, benchmarks, regimes, required history."""
        return self.state.model_info()

    def request(self, data, symbols: list[str] | None = None, end=None) -> dict:
        """The /forecast body a client sends for `symbols` (default: every asset) at bar `end`
        (default: the last), with exactly the history the model requires (`serving.client`).

        `data`: a loaded `Panel`, a dataset path, or a /forecast body (a dict), used as it is."""
        from adaptive_beta.serving.client import forecast_request

        if isinstance(data, Mapping):
            return dict(data)
        panel = _panel(data)
        return forecast_request(panel, self.required, list(symbols or panel.symbols), self._raw(panel), end)

    def forecast(self, data, symbols: list[str] | None = None, end=None, caller: str = "notebook") -> dict:
        """The /forecast response for `symbols` at bar `end`, logged as `caller`."""
        from adaptive_beta.serving.endpoints.forecast import forecast
        from adaptive_beta.serving.schemas import ForecastRequest

        body = self.request(data, symbols, end)
        return forecast(self.state, ForecastRequest.model_validate(body), caller)

    def explain(
        self, data, symbols: list[str] | None = None, end=None, caller: str = "notebook", top_groups: int = 3
    ) -> dict:
        """The /explain response (every group's Shapley contribution, the `top_groups` named)."""
        from adaptive_beta.serving.endpoints.explain import explain
        from adaptive_beta.serving.schemas import ExplainRequest

        body = {**self.request(data, symbols, end), "top_groups": top_groups}
        return explain(self.state, ExplainRequest.model_validate(body), caller)

    def _raw(self, panel) -> dict:
        """The dataset's factor observations as a client sends them (read once per dataset)."""
        source = panel.meta.get("source")
        if source is None:
            return {}
        if source not in self._factors:
            from adaptive_beta.serving.client import raw_factor_series

            self._factors[source] = raw_factor_series(source)
        return self._factors[source]

    def close(self) -> None:
        """Close the audit log (its last anchor is written)."""
        if self.state.audit is not None:
            self.state.audit.close()

    def __enter__(self) -> LocalService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_audit(db: str | Path, limit: int = 100, **filters: Any) -> pd.DataFrame:
    """Audit records newest first, one row each (chain fields, caller, endpoint, model identity,
    input digest, features, output and explanation as dicts).  `filters`: `since`, `until`,
    `symbol`, `endpoint`, `model_version`, `caller`, `request_id`, `offset`."""
    from adaptive_beta.models.audit.log import AuditReader

    with AuditReader(db) as reader:
        return pd.DataFrame(reader.query(limit=limit, **filters))


def count_audit(db: str | Path, **filters: Any) -> int:
    """Number of audit records matching the same filters as `read_audit`."""
    from adaptive_beta.models.audit.log import AuditReader

    with AuditReader(db) as reader:
        return reader.count(**filters)


def verify_audit(db: str | Path):
    """Re-hash the whole chain (`VerifyResult`: `ok`, `n_records`, `head_hash`, and where it
    breaks: `first_bad_seq`, `kind`, `problem`).  Keep `head_hash` elsewhere too: a chain alone
    cannot reveal records cut from its end."""
    from adaptive_beta.models.audit.log import verify_chain

    return verify_chain(db)


def export_audit(db: str | Path, path: str | Path, fmt: str = "parquet", since=None, until=None) -> int:
    """Write the records oldest first to `path` (`parquet`, `csv` or `jsonl`), stored text kept so
    the export can be re-verified elsewhere; returns the number written."""
    from adaptive_beta.models.audit.log import AuditReader

    with AuditReader(db) as reader:
        return reader.export(path, since=since, until=until, fmt=fmt)


def audit_report(db: str | Path, since=None, until=None, out: str | Path | None = None, verify: bool = True):
    """The periodic compliance report's data (`ReportData`: counts, forecasts, largest changes and
    their drivers, chain check) for [since, until); with `out`, also the self-contained HTML
    file `abeta audit report` writes (its path is `.path` on the result)."""
    from adaptive_beta.models.audit.log import AuditReader
    from adaptive_beta.serving.compliance.registry import champion_history
    from adaptive_beta.serving.compliance.report import build_report, render_report, write_report

    with AuditReader(db) as reader:
        data = build_report(reader, since, until, history=champion_history(), verify=verify)
    data.path = write_report(render_report(data), out) if out is not None else None
    return data
