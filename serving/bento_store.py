"""The bundle in BentoML's model store: what `bentoml build` packs into a Bento beside the service.

`export_bundle_to_store(uri)` copies the bundle named by a folder or an MLflow URI
(`models:/adaptive-beta@champion`) into the store as the BentoML model `adaptive-beta:<version>`,
the version being the first 16 hex digits of the bundle's sha256 (one bundle, one version: a
second export of the same bytes is a no-op).  Labels and metadata carry what an operator needs
to trace it back: the MLflow name, version, alias and run, the bundle and feature-spec hashes,
the training period.  Run as a Bento (`bentoml serve <bento>`, its image) without `ABETA_MODEL`,
the service loads the model packed in the Bento (`served_model`); `ABETA_MODEL=bento:NAME[:VERSION]`
names one in the store explicitly (`models.bundle.resolve` resolves the `bento:` scheme).

Torch-free (bentoml and, for registry URIs, mlflow only), like the rest of serving.
"""

from __future__ import annotations

import shutil

BENTO_MODEL = "adaptive-beta"  # the BentoML model name bentofile.yaml packs


def _registry_info(uri: str) -> dict[str, str]:
    """MLflow name/version/alias/run of a `models:/` URI ({} for a folder; best effort)."""
    from adaptive_beta.models.bundle.resolve import MODELS_URI

    m = MODELS_URI.match(uri)
    if m is None:
        return {}
    from mlflow import MlflowClient

    from adaptive_beta.models.bundle.resolve import require_store

    client = MlflowClient(tracking_uri=require_store())
    if m["alias"]:
        mv = client.get_model_version_by_alias(m["name"], m["alias"])
    else:
        mv = client.get_model_version(m["name"], m["version"])
    info = {"mlflow_model": m["name"], "mlflow_version": str(mv.version), "mlflow_run_id": mv.run_id or ""}
    if m["alias"]:
        info["mlflow_alias"] = m["alias"]
    return info


def export_bundle_to_store(uri: str, name: str = BENTO_MODEL):
    """Copy the bundle at `uri` into BentoML's model store (BENTOML_HOME); return the bentoml.Model.

    Raises DataError (one line) when `uri` names no bundle; an existing identical version is
    returned as it is.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.resolve import check_model, resolve_bundle

    check_model(uri)
    folder = resolve_bundle(uri)
    bundle = load_bundle(folder)
    tag = f"{name}:{bundle.sha256[:16]}"
    try:
        return bentoml.models.get(tag)
    except NotFound:
        pass
    meta = bundle.meta
    registry = _registry_info(uri)
    metadata = {
        "source": uri,
        "bundle_sha256": bundle.sha256,
        "model_name": meta.model_name,
        "model_version": str(meta.model_version or ""),
        "feature_spec_hash": meta.feature_spec_hash,
        "training_period": {k: str(v or "") for k, v in meta.training_period.model_dump(mode="json").items()},
        "benchmarks": list(meta.benchmarks),
        **registry,
    }
    labels = {
        "bundle_sha256": bundle.sha256[:16],
        **{k: v for k, v in registry.items() if k != "mlflow_run_id"},
    }
    with bentoml.models.create(tag, labels=labels, metadata=metadata, module=__name__) as model:
        shutil.copytree(folder, model.path, dirs_exist_ok=True)
    return bentoml.models.get(tag)


def served_model(settings, bento) -> str:
    """The model the service loads: `ABETA_MODEL` when set; else, run as a Bento (`bento` is the
    Bento BentoML loaded the service from, None otherwise), the `adaptive-beta` model packed in it;
    else the settings' default (the MLflow registry's champion)."""
    if "model" not in settings.model_fields_set and bento is not None:
        tags = [str(m.tag) for m in bento.info.all_models if m.tag.name == BENTO_MODEL]
        if tags:
            return f"bento:{tags[0]}"
    return settings.model
