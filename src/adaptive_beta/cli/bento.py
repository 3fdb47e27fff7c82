"""`abeta models export-bento`: the registered bundle into BentoML's model store, for `bentoml build`."""

from __future__ import annotations

import typer


def export_bento(
    model: str = typer.Option(
        "models:/adaptive-beta@champion",
        "--model",
        help="models:/NAME@ALIAS, models:/NAME/VERSION or a folder.",
    ),
    name: str = typer.Option(
        "adaptive-beta", "--name", help="BentoML model name (bentofile.yaml packs adaptive-beta)."
    ),
) -> None:
    """Import a bundle into BentoML's model store (BENTOML_HOME) with its MLflow metadata; then
    `bentoml build` packs it into a Bento with the service.  Exit 2 with one line if there is no such model."""
    from adaptive_beta.serving.bento_store import export_bundle_to_store

    m = export_bundle_to_store(model, name)
    typer.echo(f"BentoML model {m.tag} (from {model}, bundle {m.info.metadata['bundle_sha256'][:16]})")
    typer.echo("next: bentoml build   (in the repository root; bentofile.yaml)")
