"""Map the repository's top-level folders into one installed namespace, `adaptive_beta`.

The folders stay where users know them (`models/`, `training/`, `serving/`); installed, they are
`adaptive_beta.models`, `adaptive_beta.training` and `adaptive_beta.serving`, and no generic
top-level name (`models`, ...) is installed. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

ROOTS = {
    "adaptive_beta": "src/adaptive_beta",
    "adaptive_beta.models": "models",
    "adaptive_beta.training": "training",
    "adaptive_beta.serving": "serving",
}

packages = []
for package, folder in ROOTS.items():
    packages.append(package)
    packages += [f"{package}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=ROOTS)
