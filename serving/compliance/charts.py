"""Chart data for the compliance pages (Chart.js configs as JSON) and PNGs for the mailed report.

The maths lives in pure functions (`waterfall_steps`) so the page, the report and the tests agree
on what a bar means.  A waterfall goes from the explanation baseline (every feature at its training
mean) through each group's Shapley contribution to the forecast; exact group Shapley values sum to
forecast - baseline (efficiency), so the bars close exactly.  When only the top groups were logged
(the /forecast summary keeps three drivers) the unlogged remainder is one explicit "other groups"
bar, or, without a known baseline, the first bar is "baseline + other groups".
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

UP = "#2e7d32"
DOWN = "#c62828"
TOTAL = "#37474f"
ACCENT = "#1565c0"
TOL = 1e-9


@dataclass(frozen=True)
class Step:
    """One waterfall bar from `start` to `end`; kind: base | up | down | total."""

    label: str
    start: float
    end: float
    kind: str

    @property
    def value(self) -> float:
        return self.end - self.start


def waterfall_steps(
    forecast: float, contributions: Sequence[tuple[str, float]], baseline: float | None = None
) -> list[Step]:
    """Bars baseline -> contributions (largest |value| first) -> forecast; see the module docstring."""
    items = sorted(((str(n), float(v)) for n, v in contributions), key=lambda nv: -abs(nv[1]))
    shown = sum(v for _, v in items)
    if baseline is None:
        start, first = forecast - shown, "baseline + other groups"
        rest = 0.0
    else:
        start, first = float(baseline), "baseline"
        rest = forecast - baseline - shown
    steps = [Step(first, 0.0, start, "base")]
    level = start
    for name, v in items:
        steps.append(Step(name.replace("_", " "), level, level + v, "up" if v >= 0 else "down"))
        level += v
    if abs(rest) > TOL:
        steps.append(Step("other groups", level, level + rest, "up" if rest >= 0 else "down"))
        level += rest
    steps.append(Step("forecast", 0.0, float(forecast), "total"))
    return steps


_COLORS = {"base": TOTAL, "total": ACCENT, "up": UP, "down": DOWN}


def waterfall_config(steps: Sequence[Step], title: str = "") -> dict:
    """Chart.js floating-bar config of a waterfall (each bar spans [start, end])."""
    return {
        "type": "bar",
        "data": {
            "labels": [s.label for s in steps],
            "datasets": [
                {
                    "label": "contribution",
                    "data": [[round(s.start, 6), round(s.end, 6)] for s in steps],
                    "backgroundColor": [_COLORS[s.kind] for s in steps],
                    "borderSkipped": False,
                }
            ],
        },
        "options": {
            "responsive": True,
            "maintainAspectRatio": False,
            "animation": False,
            "plugins": {"legend": {"display": False}, "title": {"display": bool(title), "text": title}},
            "scales": {"y": {"title": {"display": True, "text": "beta"}, **waterfall_range(steps)}},
        },
    }


def waterfall_range(steps: Sequence[Step], pad: float = 0.35) -> dict:
    """y-axis bounds around the levels the bars move between, so small contributions stay visible
    (the baseline and forecast bars, drawn from 0, are cut at the lower bound)."""
    levels = [steps[0].end] + [v for s in steps[1:-1] for v in (s.start, s.end)] + [steps[-1].end]
    lo, hi = min(levels), max(levels)
    span = max(hi - lo, 0.05 * max(abs(lo), abs(hi)), 1e-3)
    lo, hi = lo - pad * span, hi + pad * span
    if lo <= 0.0 <= hi or min(levels) < 0.0:
        return {}
    return {"min": round(lo, 4), "max": round(hi, 4)}


def line_config(labels: Sequence[str], series: dict[str, Sequence[float | None]], y_title: str) -> dict:
    """Chart.js line chart (e.g. the closes a forecast saw); None values leave gaps."""
    palette = [ACCENT, "#ef6c00", "#6a1b9a", "#00838f", "#558b2f"]
    return {
        "type": "line",
        "data": {
            "labels": list(labels),
            "datasets": [
                {
                    "label": name,
                    "data": list(values),
                    "borderColor": palette[i % len(palette)],
                    "pointRadius": 0,
                    "borderWidth": 1.5,
                    "spanGaps": False,
                }
                for i, (name, values) in enumerate(series.items())
            ],
        },
        "options": {
            "responsive": True,
            "maintainAspectRatio": False,
            "animation": False,
            "plugins": {"legend": {"display": len(series) > 1}},
            "scales": {
                "y": {"title": {"display": True, "text": y_title}},
                "x": {"ticks": {"maxTicksLimit": 6}},
            },
        },
    }


def bar_config(labels: Sequence[str], values: Sequence[float], y_title: str) -> dict:
    return {
        "type": "bar",
        "data": {
            "labels": list(labels),
            "datasets": [{"label": y_title, "data": list(values), "backgroundColor": ACCENT}],
        },
        "options": {
            "responsive": True,
            "maintainAspectRatio": False,
            "animation": False,
            "plugins": {"legend": {"display": False}},
            "scales": {"y": {"beginAtZero": True, "title": {"display": True, "text": y_title}}},
        },
    }


def to_json(config: dict) -> str:
    """JSON for an HTML attribute (Jinja escapes it); NaN is not JSON, so it becomes null."""
    return json.dumps(config, allow_nan=False, default=str)


def steps_as_dicts(steps: Sequence[Step]) -> list[dict]:
    return [{**asdict(s), "value": s.value} for s in steps]


# ---------------------------------------------------------------------------- report PNGs


def _figure(width: float = 6.4, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.grid(axis="y", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return plt, fig, ax


def png_data_uri(fig) -> str:
    """The figure as `data:image/png;base64,...` (the report must be one self-contained file)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_bars(labels: Sequence[str], values: Sequence[float], title: str, ylabel: str) -> str:
    plt, fig, ax = _figure()
    ax.bar(range(len(values)), values, color=ACCENT)
    ax.set_xticks(range(len(values)), list(labels), rotation=30, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    return png_data_uri(fig)


def png_histograms(samples: dict[str, Sequence[float]], title: str, xlabel: str) -> str:
    plt, fig, ax = _figure()
    for i, (name, values) in enumerate(samples.items()):
        if len(values):
            ax.hist(
                list(values), bins=20, alpha=0.55, label=name, color=[ACCENT, "#ef6c00", "#6a1b9a"][i % 3]
            )
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("forecasts")
    if samples:
        ax.legend(fontsize=8)
    return png_data_uri(fig)


def png_boxplot(samples: dict[str, Sequence[float]], title: str, ylabel: str) -> str:
    plt, fig, ax = _figure(6.4, 3.6)
    names = [n for n, v in samples.items() if len(v)]
    if names:
        ax.boxplot([list(samples[n]) for n in names], showfliers=True)
        ax.set_xticks(range(1, len(names) + 1), [n.replace("_", " ") for n in names], rotation=30, ha="right")
    ax.axhline(0.0, color=TOTAL, lw=0.8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    return png_data_uri(fig)
