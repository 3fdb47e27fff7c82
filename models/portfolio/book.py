"""Portfolios for the overlay backtest and the stress tests: a file (TOML/YAML/CSV) -> symbol -> amount.

A portfolio is the *core* book the overlay hedges.  Amounts are either weights (fractions of NAV,
signed: long > 0) or USD notionals; the file says which (`units = "weight"` or `"notional"`, CSV:
the column name).  Errors are `DataError`s naming the file and the symbol or field, so the CLI
turns them into one line and exit code 2.

Formats:

    # TOML (YAML: the same keys)          # CSV
    units = "weight"                      symbol,weight
    [positions]                           SOLUSDT,0.5
    SOLUSDT = 0.5                         ADAUSDT,0.5
    ADAUSDT = 0.5
"""

from __future__ import annotations

import csv
import io
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from adaptive_beta.models.data.schema import DataError, find_btc, is_btc

UNITS = ("weight", "notional")


@dataclass(frozen=True)
class Portfolio:
    """Signed amounts per symbol; `units` says whether they are NAV weights or USD notionals."""

    positions: dict[str, float]
    units: str = "weight"
    source: str = "default"

    def weights(self) -> dict[str, float]:
        """Amounts as fractions of NAV; notionals are divided by their gross sum (NAV = gross notional)."""
        if self.units == "weight":
            return dict(self.positions)
        gross = sum(abs(v) for v in self.positions.values())
        return {s: v / gross for s, v in self.positions.items()}

    def notionals(self, nav: float) -> dict[str, float]:
        """Amounts in USD: weights times `nav`, notionals as given."""
        if self.units == "notional":
            return dict(self.positions)
        return {s: v * nav for s, v in self.positions.items()}

    def check_symbols(self, available: list[str]) -> None:
        """Raise DataError naming the first symbol that is not in `available` (the panel's assets)."""
        for sym in self.positions:
            if sym not in available:
                raise DataError(
                    f"portfolio symbol {sym!r} is not in the data (assets: {', '.join(available)})",
                    file=self.source,
                    column=sym,
                )


def is_core_default(symbol: str) -> bool:
    """Altcoins: every asset that is not a BTC or ETH contract (those are the default hedge perps)."""
    return not (is_btc(symbol) or symbol.upper().startswith("ETH"))


def default_portfolio(symbols: list[str]) -> Portfolio:
    """Long an equal-weight basket of the altcoins (all non-BTC/ETH assets), weights summing to 1."""
    alts = [s for s in symbols if is_core_default(s)]
    if not alts:
        raise DataError(f"the data has no altcoins for the default portfolio (assets: {symbols})")
    return Portfolio({s: 1.0 / len(alts) for s in alts}, "weight", "default (equal-weight altcoins)")


def default_hedges(symbols: list[str]) -> list[str]:
    """The BTC and ETH perps of the panel (first symbol starting with BTC, then ETH)."""
    eth = next((s for s in symbols if s.upper().startswith("ETH")), None)
    return [s for s in (find_btc(symbols), eth) if s is not None]


def _number(value, file: str, sym: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise DataError(f"amount {value!r} is not a number", file=file, column=sym) from None
    if not math.isfinite(out):
        raise DataError(f"amount {value!r} is not finite", file=file, column=sym)
    return out


def parse_portfolio(data: dict, source: str) -> Portfolio:
    """A Portfolio from a parsed TOML/YAML table (`units`, `positions`)."""
    if not isinstance(data, dict):
        raise DataError("portfolio file must hold a table with `positions`", file=source)
    data = data.get("portfolio", data)
    units = str(data.get("units", "weight")).lower()
    if units not in UNITS:
        raise DataError(f"field 'units' must be one of {UNITS}, got {units!r}", file=source, column="units")
    raw = data.get("positions")
    if not isinstance(raw, dict) or not raw:
        raise DataError("field 'positions' must be a non-empty table symbol -> amount", file=source)
    positions = {str(s): _number(v, source, str(s)) for s, v in raw.items()}
    if all(v == 0 for v in positions.values()):
        raise DataError("every position is zero: nothing to hedge", file=source, column="positions")
    return Portfolio(positions, units, source)


def _parse_csv(text: str, source: str) -> Portfolio:
    reader = csv.DictReader(io.StringIO(text))
    cols = [c.strip().lower() for c in reader.fieldnames or []]
    if "symbol" not in cols:
        raise DataError("CSV portfolio needs a 'symbol' column", file=source, column="symbol")
    unit = next((u for u in UNITS if u in cols), None)
    if unit is None:
        raise DataError("CSV portfolio needs a 'weight' or 'notional' column", file=source)
    positions: dict[str, float] = {}
    for i, row in enumerate(reader, start=1):
        row = {k.strip().lower(): v for k, v in row.items() if k is not None}
        sym = (row.get("symbol") or "").strip()
        if not sym:
            raise DataError("empty symbol", file=source, row=i, column="symbol")
        if sym in positions:
            raise DataError(f"symbol {sym!r} listed twice", file=source, row=i, column="symbol")
        try:
            positions[sym] = _number(row.get(unit), source, unit)
        except DataError as exc:
            raise DataError(exc.message, file=source, row=i, column=unit) from None
    return parse_portfolio({"units": unit, "positions": positions}, source)


def load_portfolio(path: str | Path) -> Portfolio:
    """Read a portfolio file (.toml, .yaml/.yml, .csv); DataError naming the file on any problem."""
    p = Path(path)
    if not p.is_file():
        raise DataError("portfolio file does not exist", file=str(p))
    text = p.read_text()
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return _parse_csv(text, str(p))
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # TOMLDecodeError / YAMLError
        raise DataError(f"not valid {suffix.lstrip('.') or 'TOML'}: {exc}", file=str(p)) from exc
    return parse_portfolio(data, str(p))
