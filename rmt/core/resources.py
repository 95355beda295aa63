"""The package's data, found with :mod:`importlib.resources`: the ready scenarios and the model zoo.

They ship inside the ``rmt`` package (``rmt/scenarios``, ``rmt/zoo``), so a plain ``pip install`` finds them from any
folder exactly as a checkout does.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_path(*parts: str) -> Path:
    """The file system path of ``rmt/<parts...>`` (installed packages are plain folders, never zip archives)."""
    return Path(str(files("rmt").joinpath(*parts)))


#: The ready scenarios: ``<name>.json`` definitions and the locustfiles that compose them.
SCENARIOS = package_path("scenarios")
#: The default model repository: the zoo, every model of which loads on a CPU-only machine.
ZOO_REPOSITORY = package_path("zoo", "models")
#: Zoo models the server must refuse to load (kept apart so the default repository comes up READY).
REFUSED_REPOSITORY = package_path("zoo", "refused")
#: Zoo models with KIND_GPU instances on GPU 0 only (need a GPU and torch or cupy in the stub's Python).
GPU_REPOSITORY = package_path("zoo", "gpu")
#: Zoo models whose instance groups span GPUs 0 and 1 (the cross-device scenarios; need two GPUs).
MULTI_GPU_REPOSITORY = package_path("zoo", "multigpu")
#: The zoo's single model implementation (every zoo model's ``1/model.py``).
ZOO_MODEL = package_path("zoo", "zoo_model.py")
