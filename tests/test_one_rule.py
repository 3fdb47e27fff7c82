"""One implementation per rule: guards (read from the source, AST) against copies coming back.

Each rule below was once written two to twelve times and the copies drifted; the one
implementation and its behaviour tests are named in each test's docstring.  These tests only
look at the package source (models, training, serving, src), never at tests.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = [ROOT / "models", ROOT / "training", ROOT / "serving", ROOT / "src" / "adaptive_beta"]


def _sources() -> dict[str, ast.Module]:
    out = {}
    for folder in PACKAGE:
        for path in sorted(folder.rglob("*.py")):
            out[path.relative_to(ROOT).as_posix()] = ast.parse(path.read_text(), str(path))
    return out


SOURCES = _sources()


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings (documentation may name anything)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _where(predicate) -> list[str]:
    """`file:line` of every node of the package source for which predicate(node) holds."""
    hits = []
    for file, tree in SOURCES.items():
        for node in ast.walk(tree):
            if predicate(node):
                hits.append(f"{file}:{node.lineno}")
    return hits


def _str(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def test_the_btc_rule_is_written_once():
    """`models.data.schema.is_btc` / `find_btc` is the only `startswith("BTC...")` of the code."""

    def btc_prefix(node) -> bool:
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "startswith"
            and any((_str(a) or "").upper().startswith("BTC") for a in node.args)
        )

    assert _where(btc_prefix) == [f"models/data/schema.py:{_line('models/data/schema.py', 'is_btc')}"]


def test_the_default_benchmark_rule_is_written_once():
    """`meta.get("btc_symbol") or ...` (the benchmark hedges default to) only in `schema.btc_benchmark`."""

    def default_bench(node) -> bool:
        return isinstance(node, ast.BoolOp) and 'get("btc_symbol")' in ast.unparse(node.values[0]).replace(
            "'", '"'
        )

    assert _where(default_bench) == [
        f"models/data/schema.py:{_line('models/data/schema.py', 'btc_benchmark')}"
    ]


def _line(file: str, function: str) -> int:
    for node in ast.walk(SOURCES[file]):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return node.body[-1].lineno
    raise AssertionError(f"{file} has no function {function}")


def test_the_bar_series_rule_is_written_once():
    """Comparing a category with "crypto_benchmark" happens only in `schema.is_bar_series`."""

    def compares_category(node) -> bool:
        return isinstance(node, ast.Compare) and any(
            _str(c) == "crypto_benchmark" for c in [node.left, *node.comparators]
        )

    assert _where(compares_category) == [
        f"models/data/schema.py:{_line('models/data/schema.py', 'is_bar_series')}"
    ]


AUDIT_NAMES = {
    "request_id",
    "model_name",
    "model_version",
    "bundle_sha256",
    "run_id",
    "feature_spec_hash",
    "input_sha256",
    "prev_hash",
}


def test_the_audit_columns_are_listed_once():
    """`models.audit.chain.COLUMNS` is the one list of stored columns: no other list, tuple, set
    or string (SQL DDL) outside docstrings names three or more of them."""
    hits = []
    for file, tree in SOURCES.items():
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.List | ast.Tuple | ast.Set):
                names = {_str(e) for e in node.elts} & AUDIT_NAMES
            elif _str(node) is not None and id(node) not in docs:
                names = set(re.findall(r"\w+", node.value)) & AUDIT_NAMES
            elif isinstance(node, ast.JoinedStr):
                text = " ".join(_str(v) or "" for v in node.values)
                names = set(re.findall(r"\w+", text)) & AUDIT_NAMES
            else:
                continue
            if len(names) >= 3:
                hits.append(f"{file}:{node.lineno}")
    chain = [h for h in hits if h.startswith("models/audit/chain.py:")]
    assert len(chain) == 2, hits  # COLUMNS and TEXT_FIELDS (the hashed text columns, a subset)
    assert hits == chain


def test_the_window_span_is_computed_once():
    """`(steps - 1) * stride + 1` appears only in `models.features.windows.window_span`."""

    def span_formula(node) -> bool:
        return (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Add)
            and isinstance(node.left, ast.BinOp)
            and isinstance(node.left.op, ast.Mult)
            and "stride" in ast.unparse(node.left)
            and ast.unparse(node.right) == "1"
        )

    assert _where(span_formula) == [
        f"models/features/windows.py:{_line('models/features/windows.py', 'window_span')}"
    ]


def test_no_duration_field_validators_remain():
    """Duration fields use the `models.durations.Duration` type; no validator calls parse_duration."""

    def duration_validator(node) -> bool:
        if not isinstance(node, ast.FunctionDef):
            return False
        decorated = any("field_validator" in ast.unparse(d) for d in node.decorator_list)
        calls = {ast.unparse(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}
        return decorated and bool(calls & {"parse_duration", "_zero_or_duration"})

    assert _where(duration_validator) == []


def test_the_feature_spec_hash_is_computed_once():
    """Only `models.features.spec` hashes a feature spec (sha256 over its canonical JSON)."""

    def hashes_a_spec(node) -> bool:
        return (
            isinstance(node, ast.Call)
            and ast.unparse(node.func).endswith("sha256")
            and "spec" in ast.unparse(node).lower().replace("sha256", "")
        )

    assert {h.split(":")[0] for h in _where(hashes_a_spec)} <= {"models/features/spec.py"}
    assert _where(lambda n: isinstance(n, ast.FunctionDef) and n.name == "_spec_hash") == []


def test_each_unified_helper_is_defined_once_and_the_old_copies_are_gone():
    defined = Counter(  # module-level functions (AppState.feature_spec_hash is a property)
        node.name for tree in SOURCES.values() for node in tree.body if isinstance(node, ast.FunctionDef)
    )
    for name in (
        "is_btc",
        "find_btc",
        "btc_benchmark",
        "is_bar_series",
        "is_bar_input",
        "window_span",
        "feature_spec_hash",
        "forecast_windows",
        "factor_betas",
        "replay_covered",
    ):
        assert defined[name] == 1, name
    for old in (
        "_covers",
        "_is_bar_series",
        "_is_bar_input",
        "_is_bar_name",
        "_spec_hash",
        "_zero_or_duration",
    ):
        assert defined[old] == 0, old


def test_the_finite_beta_lookup_is_written_once():
    """`models.portfolio.hedge.finite_beta` is the only place that says a beta is missing or not
    finite (hedge and stress once each had their own copy with its own wording)."""

    def message(node) -> bool:
        if not isinstance(node, ast.JoinedStr):
            return False
        text = "".join(_str(v) or "" for v in node.values)
        return ": no beta " in text or " is not finite" in text and "beta of" in text

    assert len(_where(message)) == 2, _where(message)  # the two messages of finite_beta
