"""The Bento's service entry (bentofile.yaml `service: serving.bento_entry:AdaptiveBeta`).

Why not `adaptive_beta.serving.service` directly: in the image built by `bentoml containerize`
the package is not pip-installed, because its dependencies include torch and lightning, which the
service never imports (requirements/bento.txt lists what it does import).  The Bento carries the
source folders instead, and this module maps them onto the `adaptive_beta` namespace exactly as
setup.py's `package_dir` does.  Where the package is installed (`bentoml build` in the dev
venv, `bentoml serve` of a Bento here), the installed package is used and nothing is mapped.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {  # = setup.py ROOTS, minus training (torch; the service never imports it)
    "adaptive_beta": ROOT / "src" / "adaptive_beta",
    "adaptive_beta.models": ROOT / "models",
    "adaptive_beta.serving": ROOT / "serving",
}


def map_source_tree() -> bool:
    """Make `adaptive_beta.*` importable from the source folders if it is not installed; True if mapped."""
    if importlib.util.find_spec("adaptive_beta") is not None:
        return False
    for name, folder in FOLDERS.items():
        spec = importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        if "." in name:
            setattr(sys.modules["adaptive_beta"], name.rsplit(".", 1)[1], module)
    return True


map_source_tree()

from adaptive_beta.serving.service import AdaptiveBeta  # noqa: E402

__all__ = ["AdaptiveBeta"]
