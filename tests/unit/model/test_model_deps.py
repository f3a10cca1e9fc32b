"""dvc.yaml lists, in each model stage's deps, every module of ``mlops.model`` the stage runs: a
change to a helper module (the metrics, the folds, the parity gate...) re-runs the stages that use
it, and no other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import PROJECT_ROOT

SOURCE = PROJECT_ROOT / "src"
PIPELINE = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
MODEL_STAGES = ("train", "evaluate", "accept", "package")


def module_path(name: str) -> Path | None:
    path = SOURCE / f"{name.replace('.', '/')}.py"
    return path if path.is_file() else None


def imported_modules(path: Path) -> set[str]:
    """The ``mlops`` modules ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlops"):
            assert node.module is not None
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # a module itself
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mlops")}
    return {name for name in found if module_path(name)}


def model_modules_run_by(module: str) -> set[str]:
    """The files of ``mlops.model`` that running ``module`` imports, directly or not."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        path = module_path(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        pending += imported_modules(path)
    return {f"src/{name.replace('.', '/')}.py" for name in seen if name.startswith("mlops.model.")}


@pytest.mark.parametrize("stage", MODEL_STAGES)
def test_a_model_stage_lists_every_model_module_it_runs(stage: str) -> None:
    definition = PIPELINE["stages"][stage]
    module = definition["cmd"].split("python -m ")[1].split()[0]
    listed = {dep for dep in definition["deps"] if dep.startswith("src/mlops/model/")}

    assert model_modules_run_by(module) == listed


def test_the_import_walk_sees_helper_modules() -> None:
    # accept reaches the metrics, the threshold and the ONNX scoring, and never the evaluate stage
    modules = model_modules_run_by("mlops.model.accept")

    assert {"src/mlops/model/metrics.py", "src/mlops/model/onnx_export.py"} <= modules
    assert "src/mlops/model/evaluate.py" not in modules
