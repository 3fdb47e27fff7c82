"""Write docs/api.md from the docstrings of the public API (`adaptive_beta.__all__`).

Why generated: the reference then cannot drift from the code; `--check` (run by
tests/test_api.py) fails when docs/api.md differs from what the docstrings say.
Usage: `python scripts/api_docs.py` (write) or `python scripts/api_docs.py --check`.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "api.md"
HEADER = """# Python API

`import adaptive_beta as ab`: the functions a notebook needs, each a thin composition of the modules
the CLI and the service use (so the numbers are theirs). Generated from the docstrings by
`python scripts/api_docs.py`; do not edit by hand.

```python
import adaptive_beta as ab

folder = ab.simulate("sim", seed=5, n_assets=4, days=760)  # or your own dataset folder
panel = ab.load_dataset(folder)
card = ab.evaluate_baselines(panel, horizon="30d", n_boot=200)
res = ab.classical_beta(
    panel.returns()["ETHUSDT"], panel.benchmark_returns()["BTCUSDT"], "rolling_ols", "90d"
)
model = ab.load_model("models:/adaptive-beta@champion")  # or a bundle folder
model.predict(panel)  # one row per asset: betas, intervals, regime probabilities
model.explain(panel)  # group Shapley contributions per asset and benchmark

run = ab.train(folder, model={"epochs": 2}, walk_forward={"max_folds": 1})  # what `abeta train` does
print(run.scorecard.table())  # the model beside every baseline on the same test rows
report = ab.backtest(panel, ab.baseline_forecasts(panel, ["rolling_ols_30d", "welch_hl60d"]))
print(report.text())  # what `abeta backtest` prints

with ab.LocalService(run.bundle_dir, "audit.db") as service:  # the service's endpoints, no HTTP
    service.forecast(panel, ["ETHUSDT"], caller="desk-a")  # logged before it answers
ab.verify_audit("audit.db").ok
```

Notebooks import only this module (plus numpy, pandas, matplotlib, mlflow, IPython); a deep module
(`adaptive_beta.models...`, `adaptive_beta.training...`) is for the service and the training job.

## The panel frame

`Model.predict`/`explain` and the registered MLflow model
(`mlflow.pyfunc.load_model("models:/adaptive-beta@champion").predict(frame)`) take a long table,
one row per observation, carrying what a `/forecast` request carries:

"""


def signature_text(func) -> str:
    """`(name: type = default, ...) -> type` with the annotations as written (they are strings)."""
    parts, star = [], False
    for p in inspect.signature(func).parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.annotation is not p.empty:
            text += f": {p.annotation}"
        if p.default is not p.empty:
            text += " = " + repr(p.default).replace("'", '"')
        parts.append(text)
    ret = inspect.signature(func).return_annotation
    return f"({', '.join(parts)})" + ("" if ret is inspect.Signature.empty else f" -> {ret}")


def render() -> str:
    import adaptive_beta
    from adaptive_beta.models.bundle import panel_frame

    doc = inspect.getdoc(panel_frame) or ""
    table = doc[doc.index("| column") :]
    parts = [HEADER + table + "\n"]
    for name in adaptive_beta.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(adaptive_beta, name)
        kind = "class" if inspect.isclass(obj) else "function"
        made_by_hand = kind == "class" and not hasattr(obj, "__dataclass_fields__")  # results are dataclasses
        sig = signature_text(obj).removesuffix(" -> None") if kind == "function" or made_by_hand else ""
        parts.append(f"## `ab.{name}{sig}`\n\n{inspect.getdoc(obj)}\n")
        if kind == "class":
            for meth, member in inspect.getmembers(obj):
                if meth.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
                    continue
                text = inspect.getdoc(member) or ""
                sig = signature_text(member) if inspect.isfunction(member) else ""
                parts.append(f"- `{name}.{meth}{sig}`: {text}\n" if text else f"- `{name}.{meth}{sig}`\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if docs/api.md is out of date")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python scripts/api_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
