"""The periodic compliance report: one self-contained HTML file (charts are base64 PNG data URIs),
so it can be mailed and archived as is.

Sections: requests per model version and endpoint; distribution of the forecast betas; distribution
of each explanation group's contribution; the largest forecast changes between consecutive
forecasts of one asset and benchmark, with the groups that drove them; chain verification;
champion history.  `collect` does the arithmetic (pure, testable); `render_report` lays it out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adaptive_beta.serving.compliance import charts, views

PAGE = 5000
FORECAST_ENDPOINTS = ("/forecast", "/explain")


@dataclass
class ReportData:
    since: str | None
    until: str | None
    n_records: int = 0
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (model_version, endpoint) -> n
    forecasts: dict[str, list[float]] = field(default_factory=dict)  # benchmark -> betas
    contributions: dict[str, list[float]] = field(default_factory=dict)  # group -> contributions
    changes: list[dict] = field(default_factory=list)  # largest |change| first
    verify: Any = None  # adaptive_beta.models.audit.log.VerifyResult
    history: list[dict] | None = None


def iter_records(reader: Any, since: Any, until: Any):
    """Every record in [since, until), oldest first (pages through the newest-first query)."""
    total = reader.count(since=since, until=until)
    for offset in range(max(0, total - PAGE), -PAGE, -PAGE):
        limit = PAGE if offset >= 0 else PAGE + offset
        batch = reader.query(since=since, until=until, limit=limit, offset=max(0, offset))
        yield from reversed(batch)


def collect(records, top_changes: int = 10) -> ReportData:
    """Counts, distributions and the largest consecutive forecast changes of `records` (oldest first)."""
    data = ReportData(None, None)
    counts: Counter = Counter()
    fc: dict[str, list[float]] = defaultdict(list)
    contrib: dict[str, list[float]] = defaultdict(list)
    last: dict[tuple[str, str], dict] = {}
    changes = []
    for rec in records:
        data.n_records += 1
        counts[(str(rec.get("model_version")), str(rec.get("endpoint")))] += 1
        if rec.get("endpoint") not in FORECAST_ENDPOINTS:
            continue
        groups_of = {(e["symbol"], e["benchmark"]): dict(e["groups"]) for e in views.explanations_of(rec)}
        for g in groups_of.values():
            for name, v in g.items():
                contrib[name].append(v)
        for f in views.forecasts_of(rec):
            for b in f["betas"]:
                if b["beta"] is None:
                    continue
                fc[b["benchmark"]].append(b["beta"])
                key = (f["symbol"], b["benchmark"])
                now = {"rec": rec, "beta": b["beta"], "groups": groups_of.get(key, {})}
                prev = last.get(key)
                if prev is not None:
                    shared = set(now["groups"]) & set(prev["groups"])
                    drivers = sorted(
                        ((g, now["groups"][g] - prev["groups"][g]) for g in shared),
                        key=lambda gv: -abs(gv[1]),
                    )
                    changes.append(
                        {
                            "symbol": key[0],
                            "benchmark": key[1],
                            "from_ts": prev["rec"]["ts"],
                            "to_ts": rec["ts"],
                            "from_request": prev["rec"]["request_id"],
                            "to_request": rec["request_id"],
                            "before": prev["beta"],
                            "after": b["beta"],
                            "change": b["beta"] - prev["beta"],
                            "drivers": drivers[:3],
                        }
                    )
                last[key] = now
    changes.sort(key=lambda c: -abs(c["change"]))
    data.counts = dict(sorted(counts.items()))
    data.forecasts = dict(fc)
    data.contributions = dict(contrib)
    data.changes = changes[:top_changes]
    return data


def build_report(
    reader: Any, since: Any = None, until: Any = None, history: list[dict] | None = None, verify: bool = True
) -> ReportData:
    from adaptive_beta.models.audit.log import parse_time, verify_chain

    data = collect(iter_records(reader, since, until))
    data.since, data.until = parse_time(since, "since"), parse_time(until, "until")
    data.verify = verify_chain(reader) if verify else None
    data.history = history
    return data


def render_report(data: ReportData) -> str:
    """The report as one HTML document with its charts inline."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=select_autoescape(["html"]),
    )
    env.filters["num"] = lambda v, d=3: "" if v is None else f"{float(v):.{d}f}"
    env.filters["signed"] = lambda v, d=3: "" if v is None else f"{float(v):+.{d}f}"
    images = {}
    if data.counts:
        labels = [f"v{v} {e}" for v, e in data.counts]
        images["counts"] = charts.png_bars(
            labels, list(data.counts.values()), "Records per model version and endpoint", "records"
        )
    if data.forecasts:
        images["forecasts"] = charts.png_histograms(data.forecasts, "Forecast betas by benchmark", "beta")
    if data.contributions:
        images["contributions"] = charts.png_boxplot(
            data.contributions, "Group contributions to the forecast (Shapley)", "contribution to beta"
        )
    summary = {
        b: {"n": len(v), "mean": sum(v) / len(v), "min": min(v), "max": max(v)}
        for b, v in data.forecasts.items()
        if v
    }
    css = (Path(__file__).parent / "static" / "style.css").read_text()
    return env.get_template("report.html").render(
        d=data,
        images=images,
        summary=summary,
        css=css,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_report(html: str, out: str | Path) -> Path:
    """Write atomically (a half-written report must never be mailed)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
