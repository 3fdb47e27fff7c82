"""Every operator setting of Adaptive Beta, in one validated object read from `ABETA_*` variables.

    from adaptive_beta.models.settings import get_settings
    get_settings().max_concurrency          # ABETA_MAX_CONCURRENCY, an int >= 1

Each field of `Settings` is the variable `ABETA_<FIELD>` (`MLFLOW_TRACKING_URI` keeps its MLflow
name); the table in docs/serving.md lists them all (a test checks it).  An empty variable counts
as unset.  A bad value is a `SettingsError` (a `DataError`: the CLI prints it as one line and
exits 2) naming the variable, e.g. `ABETA_MAX_CONCURRENCY='lots': ...`; modules that read a
setting into a constant at import use `settings_at_import`, which prints that line and exits 2
instead of a traceback (`bentoml serve` imports the service module).

Path defaults come from one place, `ABETA_HOME` (the project home), never from the working
directory: it defaults to the checkout the package is installed from (the editable install that
scripts/setup.sh makes), else `~/.adaptive-beta`.  Under it: `mlruns/` (MLflow store,
`ABETA_MLRUNS`) and `audit/audit.db` (`ABETA_AUDIT_DB`), with the market-data store
`market.db` beside the audit log (`ABETA_MARKET_DB`).  A relative path a user *gives* is
relative to the working directory as usual.

Torch-free and light (pydantic-settings only), so every layer (models, training, serving, the
CLI) can read settings; `get_settings()` re-reads the environment only when it changed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adaptive_beta.models.data.schema import DataError

PREFIX = "ABETA_"
ALIASES = {"mlflow_tracking_uri": "MLFLOW_TRACKING_URI"}  # fields whose variable keeps another name


def default_home() -> Path:
    """The checkout this package is installed from (editable install), else ~/.adaptive-beta."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "models" / "settings.py").is_file():
        return root
    return Path.home() / ".adaptive-beta"


class SettingsError(DataError):
    """One or more bad `ABETA_*` values, said in one line naming each variable."""


class Settings(BaseSettings):
    """The settings; every field is `ABETA_<FIELD>` (see the module docstring and docs/serving.md)."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", frozen=True, populate_by_name=True
    )

    # where things are
    home: Path = Field(default_factory=default_home)  # project home: path defaults below resolve from it
    mlruns: Path | None = None  # MLflow store folder (SQLite + artifacts); default HOME/mlruns
    mlflow_tracking_uri: str | None = Field(None, validation_alias="MLFLOW_TRACKING_URI")  # wins over mlruns
    ray_address: str | None = None  # Ray cluster for abeta train/tune/evaluate: auto, local or HOST:PORT
    model: str = "models:/adaptive-beta@champion"  # bundle folder, models:/NAME@ALIAS or bento:NAME[:VERSION]
    registered_model: str = "adaptive-beta"  # registry name the compliance pages read history from
    audit_db: str | None = (
        None  # audit log: path, sqlite:///path or postgresql://; default HOME/audit/audit.db
    )
    market_db: str | None = (
        None  # market-data store (POST /bars); default market.db beside a SQLite audit_db, else audit_db
    )
    live_history_bars: int = Field(0, ge=0)  # stored bars replayed into the live forecasts (0: all)
    audit_anchors: str | None = None  # signed anchor file (default DB.anchors beside SQLite)
    audit_anchor_key: str | None = None  # HMAC key file of the anchors (default DB.anchor-key)
    audit_anchor_every: int = Field(1000, ge=1)  # an anchor at least every N records ...
    audit_anchor_seconds: float = Field(60.0, gt=0)  # ... and every T seconds
    # who may call
    api_keys: SecretStr = SecretStr("")  # `name@role:key` entries, comma or newline separated
    api_keys_file: Path | None = None  # a file of such entries, one per line
    session_secret: SecretStr = SecretStr("")  # signs compliance session cookies; empty = random per process
    session_max_age_s: int = Field(8 * 3600, ge=60)  # compliance session lifetime
    auth_max_failures: int = Field(10, ge=1)  # wrong keys per client address and window; then 429
    auth_window_s: float = Field(60.0, gt=0)  # that window
    key: SecretStr | None = None  # the client's API key (python -m adaptive_beta.serving.client --url)
    # capacity and limits
    workers: int = Field(1, ge=1)  # worker processes (workers x ort_threads <= cores)
    ort_threads: int = Field(1, ge=1)  # ONNX Runtime threads per worker (lowered to fit the cores)
    max_concurrency: int = Field(16, ge=1)  # requests in flight per worker; beyond it a request waits
    queue_wait_s: float = Field(5.0, ge=0)  # the longest such wait for a slot; then 429 + Retry-After
    timeout_s: float = Field(30.0, gt=0)  # a request taking longer is cut off
    gc_gen0: int = Field(20000, ge=1)  # allocations between young-generation collections
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)  # larger request bodies: 413
    max_record_bytes: int = Field(1024 * 1024, ge=1024)  # larger audit records: 422, nothing logged
    max_assets: int = Field(64, ge=1)  # assets per request
    max_history: int = Field(2000, ge=1)  # bars per asset / points per series
    max_series: int = Field(32, ge=1)  # series per request
    max_rebalances: int = Field(1000, ge=1)  # /backtest rebalances
    max_model_windows: int = Field(20000, ge=1)  # /backtest model windows
    # plausibility of request data (a confident forecast from impossible prices helps nobody)
    max_price_jump: float = Field(10.0, gt=1)  # a close more than this x (or 1/x) the previous: 400
    clock_skew_s: float = Field(300.0, ge=0)  # a timestamp later than now + this: 400 (not yet opened)
    library_logs: bool = False  # 1: let MLflow/alembic/hmmlearn chatter through (models/noise.py)
    # monitoring and realised outcomes
    monitor_reference: str | None = None  # training reference file for /monitor (else rebuilt)
    realised_data: str | None = None  # market data the realised betas are computed from
    realised_horizon: str = "30d"  # the forecast horizon the model was trained for
    # market data downloads (abeta data fetch)
    binance_data_url: str = "https://data.binance.vision"  # Binance public-data archive (--base-url)
    ccxt_url: str | None = None  # replaces the API host of a ccxt exchange (a proxy; --base-url)

    @model_validator(mode="before")
    @classmethod
    def _path_defaults(cls, data: Any) -> Any:
        """mlruns and audit_db default under `home` (given or default), never the working directory."""
        if not isinstance(data, dict):
            return data
        home = Path(data.get("home") or default_home())
        data = {**data, "home": home}
        data.setdefault("mlruns", home / "mlruns")
        data.setdefault("audit_db", str(home / "audit" / "audit.db"))
        data.setdefault("market_db", _beside_audit(str(data["audit_db"]), home))
        return data

    @classmethod
    def variables(cls) -> list[str]:
        """Every environment variable a field reads, in field order."""
        return [variable(name) for name in cls.model_fields]

    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI, else SQLite in `mlruns` (the folder is not created here)."""
        return self.mlflow_tracking_uri or f"sqlite:///{Path(self.mlruns).resolve() / 'mlflow.db'}"


def _beside_audit(audit_db: str, home: Path) -> str:
    """The market store's default: market.db beside a SQLite audit log, the same PostgreSQL
    database as a PostgreSQL one (its own tables), HOME/audit/market.db if audit_db is unreadable."""
    from adaptive_beta.models.database import sqlite_file

    try:
        path = sqlite_file(audit_db)
    except ValueError:
        return str(home / "audit" / "market.db")
    return audit_db if path is None else str(path.parent / "market.db")


def variable(field: str) -> str:
    """The environment variable of a Settings field."""
    return ALIASES.get(field, PREFIX + field.upper())


def _describe(exc: ValidationError) -> str:
    """One line: `VAR='value': problem; ...` (never a secret's value)."""
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        name = next((f for f, a in ALIASES.items() if a == field), field)
        secret = Settings.model_fields.get(name) is not None and "Secret" in str(
            Settings.model_fields[name].annotation
        )
        shown = "<hidden>" if secret else repr(err.get("input"))
        parts.append(f"{variable(name)}={shown}: {err['msg']}")
    return "bad setting: " + "; ".join(parts)


_CACHE: dict[tuple, Settings] = {}


def get_settings() -> Settings:
    """The settings of the current environment (cached until an ABETA_* variable changes)."""
    key = tuple(
        sorted((k, v) for k, v in os.environ.items() if k.startswith(PREFIX) or k in ALIASES.values())
    )
    hit = _CACHE.get(key)
    if hit is None:
        try:
            hit = Settings()
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None
        _CACHE.clear()
        _CACHE[key] = hit
    return hit


def settings_at_import() -> Settings:
    """`get_settings()` for module constants: a bad value is one line on stderr and exit 2."""
    try:
        return get_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
