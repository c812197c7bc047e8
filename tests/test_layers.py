"""Layers that point one way: `pipelines/` uses `tasks/`, which uses `shared/`, and never the reverse; and domains
share base classes (`tasks/detection.py`, `tasks/image_classification.py`) instead of subclassing each other."""

import ast
import pathlib

import pytest

import tasks

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_MODULES = sorted((ROOT / "shared").rglob("*.py"))


def imported_packages(path):
    """The top-level packages a module imports: import statements (at any depth, lazy ones too) and
    `importlib.import_module` or `__import__` calls with a literal name. Relative imports stay inside the package
    and are left out."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return {name.split(".")[0] for name in found}


def test_the_check_sees_every_kind_of_import(tmp_path):
    module = tmp_path / "module.py"
    module.write_text(
        "import tasks.base\nfrom . import near\n"
        "def late():\n    from pipelines import runner\n    importlib.import_module('mlflow.pyfunc')\n"
    )
    assert imported_packages(module) == {"tasks", "pipelines", "mlflow"}


@pytest.mark.parametrize("path", SHARED_MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_shared_imports_neither_tasks_nor_pipelines(path):
    assert not imported_packages(path) & {"tasks", "pipelines"}, (
        f"{path.relative_to(ROOT)} imports tasks/ or pipelines/; pass what it needs in from the caller instead"
    )


def test_no_registered_task_or_its_config_subclasses_another_registered_one():
    registered = [tasks.TASKS[name] for name in tasks.names()]
    configs = {task_class.config_class for task_class in registered}
    for task_class in registered:
        assert not set(task_class.__mro__[1:]) & set(registered), (
            f"{task_class.__name__} subclasses another registered task; move what they share into an unregistered "
            "base class (as tasks/image_classification.py does)"
        )
        assert not set(task_class.config_class.__mro__[1:]) & configs, (
            f"{task_class.config_class.__name__} subclasses another registered task's config; share a base instead"
        )
