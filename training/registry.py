"""The model registry: register bundles, the promotion gate, and the champion history.

Bundles are registered as model versions whose source is the bundle logged as an MLflow pyfunc
model (`adaptive_beta.models.bundle.pyfunc`: `mlflow.pyfunc.load_model` works on a version, and
serving reads the same bundle folder inside it with ONNX Runtime, no torch), or, for runs logged
before that, the run's `bundle/` artifact folder.  A new
version gets the alias `challenger`; `promote` moves `champion` to it only when it beats the
current champion and the best classical baseline on the same held-out scorecard.  Every
decision is logged as a run in the `adaptive-beta-promotions` experiment, and the registered
model carries a `champion_history` tag (JSON) that says which version held `champion` when:
compliance asks for exactly that.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from adaptive_beta.models.data.schema import DataError
from adaptive_beta.training.tracking import setup_mlflow

DEFAULT_NAME = "adaptive-beta"
PROMOTIONS_EXPERIMENT = "adaptive-beta-promotions"
HISTORY_TAG = "champion_history"


def _client():
    from mlflow import MlflowClient

    setup_mlflow()
    return MlflowClient()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def register_bundle(
    run_id: str,
    name: str = DEFAULT_NAME,
    artifact_path: str = "bundle",
    tags: dict[str, str] | None = None,
    model_uri: str | None = None,
) -> str:
    """Register a new version with alias `challenger`; return the version.

    Its source is the logged MLflow model `model_uri` (`models:/m-...`) when given, else the run's
    `artifact_path` folder (a bare bundle).
    """
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        client.create_registered_model(
            name, description="Adaptive Beta forward-beta bundle (ONNX + feature spec)."
        )
    except MlflowException:
        pass  # already registered
    tags = {k: str(v) for k, v in (tags or {}).items()}
    if model_uri is not None:
        model_id = model_uri.removeprefix("models:/")
        mv = client.create_model_version(name, source=model_uri, run_id=run_id, tags=tags, model_id=model_id)
    else:
        run = client.get_run(run_id)
        source = f"{run.info.artifact_uri.rstrip('/')}/{artifact_path}"
        mv = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
    client.set_registered_model_alias(name, "challenger", mv.version)
    return str(mv.version)


def champion_history(name: str = DEFAULT_NAME) -> list[dict]:
    """Which version held `champion` from when until when (until None = still champion)."""
    client = _client()
    try:
        rm = client.get_registered_model(name)
    except Exception:
        return []
    return json.loads(rm.tags.get(HISTORY_TAG, "[]"))


def _version(client, name: str, version: str):
    """The registered ModelVersion, or a DataError (one line) naming what is missing and where."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException:
        raise DataError(
            f"no version {version} of {name!r} in {client.tracking_uri} (abeta models list --name {name})"
        ) from None


def _alias_version(client, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception:
        return None


@dataclass
class Headline:
    """What the gate compares: a version's pooled held-out scores, per benchmark."""

    eval_key: str  # identifies the held-out scorecard (data fingerprint + folds + horizon)
    model_mse: dict[str, float]
    best_baseline_mse: dict[str, float]
    best_baseline: dict[str, str] = field(default_factory=dict)

    def to_tags(self) -> dict[str, str]:
        return {"eval_key": self.eval_key, "headline": json.dumps(asdict(self), sort_keys=True)}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Headline | None:
        if "headline" not in tags:
            return None
        return cls(**json.loads(tags["headline"]))


@dataclass
class PromotionDecision:
    promoted: bool
    challenger: str | None
    champion_before: str | None
    reason: str
    details: dict = field(default_factory=dict)


Rescorer = Callable[[str, str], tuple[Headline, Headline]]
"""(challenger version, champion version) -> headlines of both on one freshly computed scorecard."""


def decide(challenger: Headline, champion: Headline | None, margin: float = 0.0) -> tuple[bool, str]:
    """The gate, as a pure function: beat the best baseline on every benchmark, and the champion overall."""
    losses = []
    for bench, mse in challenger.model_mse.items():
        base = challenger.best_baseline_mse.get(bench)
        if base is None or not mse < base * (1 - margin):
            name = challenger.best_baseline.get(bench, "best baseline")
            losses.append(
                f"{bench}: MSE {mse:.5f} does not beat {name} {base if base is None else f'{base:.5f}'}"
            )
    if losses:
        return False, "challenger loses to the best classical baseline (" + "; ".join(losses) + ")"
    if champion is None:
        return True, "no champion yet; challenger beats the best baseline on every benchmark"
    if champion.eval_key != challenger.eval_key:
        return (
            False,
            "champion and challenger were scored on different held-out data; re-score both on the same data",
        )
    common = sorted(set(challenger.model_mse) & set(champion.model_mse))
    ch = sum(challenger.model_mse[b] for b in common)
    cp = sum(champion.model_mse[b] for b in common)
    if ch < cp * (1 - margin):
        return True, f"challenger beats champion (summed MSE {ch:.5f} < {cp:.5f}) and the best baseline"
    return False, f"challenger does not beat champion (summed MSE {ch:.5f} >= {cp:.5f})"


def promote(
    name: str = DEFAULT_NAME, version: str | None = None, rescore: Rescorer | None = None, margin: float = 0.0
) -> PromotionDecision:
    """Run the gate for `version` (default: the `challenger` alias) and move `champion` if it wins."""
    import mlflow

    client = _client()
    challenger_v = version or _alias_version(client, name, "challenger")
    if challenger_v is None:
        return PromotionDecision(False, None, None, f"no challenger registered under {name!r}")
    champion_v = _alias_version(client, name, "champion")
    ch_tags = _version(client, name, challenger_v).tags
    ch_head = Headline.from_tags(ch_tags)
    if champion_v == challenger_v:
        decision = PromotionDecision(False, challenger_v, champion_v, "challenger is already champion")
    elif ch_head is None:
        decision = PromotionDecision(False, challenger_v, champion_v, "challenger has no held-out scorecard")
    else:
        cp_head = None
        if champion_v is not None:
            cp_head = Headline.from_tags(client.get_model_version(name, champion_v).tags)
            if cp_head is not None and cp_head.eval_key != ch_head.eval_key and rescore is not None:
                ch_head, cp_head = rescore(challenger_v, champion_v)
        ok, reason = decide(ch_head, cp_head, margin)
        decision = PromotionDecision(ok, challenger_v, champion_v, reason, {"challenger": asdict(ch_head)})
    if decision.promoted:
        now = _now()
        history = champion_history(name)
        for h in history:
            if h.get("until") is None:
                h["until"] = now
        history.append({"version": challenger_v, "from": now, "until": None, "reason": decision.reason})
        client.set_registered_model_alias(name, "champion", challenger_v)
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        client.set_model_version_tag(name, challenger_v, "promoted_at", now)
    setup_mlflow(PROMOTIONS_EXPERIMENT)
    with mlflow.start_run(run_name=f"promote v{challenger_v}"):
        mlflow.set_tags(
            {
                "model_name": name,
                "challenger": str(challenger_v),
                "champion_before": str(champion_v),
                "promoted": str(decision.promoted),
                "reason": decision.reason,
            }
        )
        mlflow.log_dict(asdict(decision), "decision.json")
    setup_mlflow()
    return decision


def list_versions(name: str = DEFAULT_NAME) -> list[dict]:
    """Versions newest first with aliases, run id, creation time and headline metrics."""
    client = _client()
    try:
        rm = client.get_registered_model(name)
    except Exception:
        return []
    aliases: dict[str, list[str]] = {}
    for alias, v in (rm.aliases or {}).items():
        aliases.setdefault(str(v), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name='{name}'"):
        head = Headline.from_tags(mv.tags)
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "run_id": mv.run_id,
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(
                    timespec="seconds"
                ),
                "model_mse": head.model_mse if head else {},
                "best_baseline_mse": head.best_baseline_mse if head else {},
            }
        )
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)
