"""Run ids: content addresses that change only when a run's numbers can.

A run id is the first 16 hex digits of sha256 over

1. the run's typed configuration (``training/config.py``: every resolved value that decides its
   numbers, and nothing else),
2. the versions of the data it reads: each prepared dataset's ``data_version`` and the digest of the
   ids it reads (its training fraction and the test list; adding another fraction changes no run),
3. the training code's digest (``code_version``): the behaviour of the modules in ``TRAINING_CODE``,
   read as syntax trees. Comments, docstrings, formatting, the paths of modules inside mdeaux (a file
   moved or renamed) and how tasks are displayed (``Display(...)`` in training/tasks.py) do not count;
   any other change to those modules gives every run a new id.

The same configuration planned by two studies is one run; an unchanged run is never trained again.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any

from mdeaux.data.split import SplitFile
from mdeaux.data.validate import refuse_if_failed
from mdeaux.model.weights import sha256_of
from mdeaux.paths import Paths
from mdeaux.runs.store import ID_LENGTH
from mdeaux.training.config import RunConfig

PACKAGE = Path(__file__).resolve().parents[1]
# The code whose behaviour decides a run's numbers, relative to the package (folders: every module in
# them). Code outside (CLI, planning, reports, validation, tracking, downloads) changes no run id.
TRAINING_CODE = ("training", "model", "data/datasets", "data/prepare.py", "data/split.py")
NOT_TRAINING_CODE = ("model/weights.py",)  # downloads backbone weights; the weights themselves are hashed by data


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class _Behaviour(ast.NodeTransformer):
    """Strips from a module what does not change what it computes."""

    def _body(self, node):
        self.generic_visit(node)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]  # the docstring
        node.body = body or [ast.Pass()]
        return node

    visit_Module = visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _body

    def visit_ImportFrom(self, node: ast.ImportFrom):
        if node.level or (node.module or "").split(".")[0] == "mdeaux":
            node.module, node.level = "mdeaux", 0  # where inside mdeaux a name comes from is layout, not behaviour
        return node

    def visit_Import(self, node: ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "mdeaux":
                alias.name = "mdeaux"
        return node

    def visit_Call(self, node: ast.Call):
        if isinstance(node.func, ast.Name) and node.func.id == "Display":  # training/tasks.py: how reports draw a task
            return ast.Constant(None)
        return self.generic_visit(node)


def module_behaviour(source: str) -> str:
    """The module as canonical source text without docstrings, comments and layout details."""
    return ast.unparse(_Behaviour().visit(ast.parse(source)))


def training_modules(package: Path | None = None) -> list[Path]:
    package = package or PACKAGE
    files = []
    for entry in TRAINING_CODE:
        path = package / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return [f for f in files if f.relative_to(package).as_posix() not in NOT_TRAINING_CODE]


def code_version(package: Path | None = None) -> str:
    """sha256 over the behaviour of the training modules (sorted by content, so a moved file counts the same)."""
    digests = sorted(hashlib.sha256(module_behaviour(f.read_text()).encode()).hexdigest() for f in training_modules(package))
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def data_versions(paths: Paths, datasets: dict[str, float]) -> dict[str, str]:
    """The prepared data version of each dataset a run reads (name -> fraction read), and the digest of
    the ids it reads."""
    out: dict[str, str] = {}
    for name, fraction in datasets.items():
        manifest = paths.prepared_of(name) / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"{manifest} is missing: run `dvc repro prepare` (or `mdeaux prepare {name}`) first")
        version = json.loads(manifest.read_text())["data_version"]
        refuse_if_failed(paths.validation_reports / name, name, version)
        split = SplitFile(paths.split_of(name))
        if split.doc.get("data_version") != version:
            raise ValueError(f"{split.path} was written for data version {str(split.doc.get('data_version'))[:12]} of "
                             f"{name}, but {manifest.parent} holds version {version[:12]}: run `dvc repro split` "
                             f"(or `mdeaux split`) again")
        out[f"{name}:data"] = version
        out[f"{name}:split"] = split.digest(fraction)
    return out


def weights_version(paths: Paths, weights_dir: str | None) -> dict[str, str]:
    """``{"weights": digest}`` of the backbone folder a run loads (empty for a random backbone): sha256 over the
    sha256 of its files as its ``MANIFEST.json`` lists them (``mdeaux weights`` and ``mdeaux pretrain`` write
    one), else over its config.json and weight files (shards included) read in full."""
    if weights_dir is None:
        return {}
    folder = paths.root / weights_dir
    manifest = folder / "MANIFEST.json"
    if manifest.is_file():
        try:
            files = {name: entry["sha256"] for name, entry in json.loads(manifest.read_text())["files"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ValueError(f"{manifest} is damaged (expected 'files' with a sha256 each): fetch or pretrain the "
                             "weights again (`mdeaux weights`, `dvc repro pretrain`)") from None
    else:
        found = sorted(f for f in folder.iterdir() if f.name == "config.json" or f.suffix in (".safetensors", ".bin")
                       or f.name.endswith(".index.json")) if folder.is_dir() else []
        if not any(f.name == "config.json" for f in found) or len(found) < 2:
            raise FileNotFoundError(f"model.weights_dir {weights_dir}: {folder} holds no Hugging Face model (config.json "
                                    "and weights): fetch it with `mdeaux weights`, or `dvc repro pretrain` for the tiny ViT")
        files = {f.name: sha256_of(f) for f in found}
    return {"weights": hashlib.sha256(canonical(files).encode()).hexdigest()}


def run_id(config: RunConfig, inputs: dict[str, str], code: str) -> str:
    record = {"config": config.model_dump(mode="json"), "inputs": inputs, "code": code}
    return hashlib.sha256(canonical(record).encode()).hexdigest()[:ID_LENGTH]
