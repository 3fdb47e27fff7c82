"""The printed backtest report: one text for `abeta backtest` and the Python API (`BacktestReport.text`).

Why its own module: the command line and a notebook must print the same table, and the
command-line layer is not something a library caller should import.
"""

from __future__ import annotations

import pandas as pd

FULL_COLUMNS = ("vol_ann", "max_drawdown", "total_return", "turnover_ann", "fees", "funding")


def format_tables(table, ratios, benches: list[str]) -> str:
    """The printed report: full period, ratios vs rolling 30d OLS, episodes."""
    lines = []
    full = table.xs("full", level="period")
    cols = [f"beta_{b}" for b in benches] + [f"roll_mad_{b}" for b in benches] + list(FULL_COLUMNS)
    with pd.option_context(
        "display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4f}".format
    ):
        lines.append("full period (beta_*: realised; roll_mad_*: mean |rolling 30d beta - target|)")
        lines.append(full[cols].to_string())
        if not ratios.empty:
            lines.append("\nratios vs the rolling-OLS 30d overlay (model / rolling_ols_30d; < 1 is better)")
            lines.append(ratios.to_string())
        eps = [p for p in table.index.get_level_values("period").unique() if p != "full"]
        for ep in eps:
            sub = table.xs(ep, level="period")
            lines.append(f"\nepisode {ep} ({int(sub['n_bars'].iloc[0])} bars)")
            lines.append(sub[[c for c in cols if c != "total_return"] + ["total_return"]].to_string())
    return "\n".join(lines)
