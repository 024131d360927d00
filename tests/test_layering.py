"""Dependencies point one way: the pipeline wires the other packages, which never import it."""
from __future__ import annotations

import ast
import pathlib

import pytest

from conftest import REPO_ROOT

WIRED_PACKAGES = ("components", "preprocessing", "models", "serving")


def _imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("package", WIRED_PACKAGES)
def test_package_does_not_import_the_pipeline(package):
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(m for m in _imported_modules(path)
                                                  if m.startswith("enja.pipeline"))
        for path in sorted((REPO_ROOT / package).glob("*.py"))}
    assert not {path: modules for path, modules in offenders.items() if modules}
