"""The model bundle on disk and its torch-free loader.

A bundle is a folder with `model.onnx`, `feature_spec.json`, `normalization.json`, `meta.json`,
`model_card.md` and `manifest.json` (sha256 of every other file).  `load_bundle` re-hashes every
file and refuses a bundle whose bytes differ from the manifest: serving must never run a graph
or a feature spec other than the one that was validated and registered.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from adaptive_beta.models.bundle.meta import BUNDLE_FORMAT, BundleMeta, BundleMetaError
from adaptive_beta.models.data.schema import DataError
from adaptive_beta.models.features.spec import FeatureSpec

MANIFEST = "manifest.json"
REQUIRED_FILES = ("model.onnx", "feature_spec.json", "normalization.json", "meta.json", "model_card.md")


class BundleError(DataError):
    """A bundle that is missing, incomplete or altered since export (names the file)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path) -> str:
    """Hash every file of the folder (except the manifest) into manifest.json; return its sha256."""
    folder = Path(folder)
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    missing = [f for f in REQUIRED_FILES if f not in files]
    if missing:
        raise BundleError(f"cannot write the manifest: bundle {folder} lacks {missing}")
    text = json.dumps({"format": BUNDLE_FORMAT, "files": files}, indent=2, sort_keys=True) + "\n"
    (folder / MANIFEST).write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Bundle:
    """A verified bundle: paths, the typed metadata and the feature spec (no torch, no ONNX session)."""

    path: Path
    meta: BundleMeta
    normalization: dict
    spec: FeatureSpec
    model_card: str
    manifest: dict
    sha256: str  # sha256 of manifest.json: the bundle's identity in the audit log
    files: dict[str, str] = field(default_factory=dict)  # file -> sha256

    @property
    def onnx_path(self) -> Path:
        return self.path / "model.onnx"

    @property
    def feature_columns(self) -> list[str]:
        return list(self.meta.feature_columns)

    @property
    def benchmarks(self) -> list[str]:
        return list(self.meta.benchmarks)


def load_bundle(path: str | Path) -> Bundle:
    """Load and verify a bundle folder; raise BundleError naming the first missing or altered file."""
    folder = Path(path)
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"no {MANIFEST} in {folder}: not a model bundle", file=str(mpath))
    raw = mpath.read_bytes()
    try:
        manifest = json.loads(raw)
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"manifest is not valid bundle JSON ({exc})", file=str(mpath)) from exc
    for name in REQUIRED_FILES:
        if name not in files:
            raise BundleError(f"manifest does not list required file {name}", file=str(mpath))
    for name, digest in sorted(files.items()):
        fp = folder / name
        if Path(name).name != name:
            raise BundleError(f"manifest lists a path outside the bundle: {name!r}", file=str(mpath))
        if not fp.is_file():
            raise BundleError("file listed in the manifest is missing", file=str(fp))
        actual = sha256_file(fp)
        if actual != digest:
            raise BundleError(
                f"sha256 mismatch (manifest {digest[:12]}..., file {actual[:12]}...): altered since export",
                file=str(fp),
            )

    def read_json(name: str) -> dict:
        try:
            return json.loads((folder / name).read_text())
        except ValueError as exc:
            raise BundleError(f"invalid JSON ({exc})", file=str(folder / name)) from exc

    try:
        meta = BundleMeta.from_json((folder / "meta.json").read_bytes())
    except BundleMetaError as exc:
        raise BundleError(str(exc), file=str(folder / "meta.json")) from exc
    try:
        spec = FeatureSpec.from_dict(read_json("feature_spec.json"))
    except ValueError as exc:
        raise BundleError(f"not a feature spec ({exc})", file=str(folder / "feature_spec.json")) from exc
    if spec.hash() != meta.feature_spec_hash:
        raise BundleError(
            f"feature spec hash {spec.hash()[:12]}... differs from meta.json's {meta.feature_spec_hash[:12]}...",
            file=str(folder / "feature_spec.json"),
        )
    return Bundle(
        path=folder,
        meta=meta,
        normalization=read_json("normalization.json"),
        spec=spec,
        model_card=(folder / "model_card.md").read_text(),
        manifest=manifest,
        sha256=hashlib.sha256(raw).hexdigest(),
        files=files,
    )
