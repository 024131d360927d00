"""Dependencies point one way: every import between the project's packages is one that
docs/architecture.md's table of packages allows, and the table allows no cycle."""
from __future__ import annotations

import ast
import pathlib
import re

import pytest

from conftest import REPO_ROOT

ARCHITECTURE = REPO_ROOT / "docs" / "architecture.md"
# A row of the table: | `package` | what it holds | the packages it may import, or — |
ROW = re.compile(r"^\| `(\w+)` \|.*\| ([\w, —]+) \|$")


def allowed_imports() -> dict[str, set[str]]:
    """Each package the page lists, and the packages it may import."""
    allowed = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        if match := ROW.match(line):
            package, imports = match.groups()
            allowed[package] = {name.strip() for name in imports.split(",")} - {"—"}
    return allowed


def subpackages() -> tuple[str, ...]:
    """setup.py's SUBPACKAGES: the packages the `enja` namespace installs."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text(encoding="utf-8"))
    (names,) = [node.value for node in tree.body
                if isinstance(node, ast.Assign) and node.targets[0].id == "SUBPACKAGES"]
    return tuple(ast.literal_eval(names))


def imported_packages(path: pathlib.Path) -> set[str]:
    """The project packages a module imports (`enja.X...`), at the top or inside functions."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return {module.split(".")[1] for module in modules if module.startswith("enja.")}


def test_the_page_lists_every_package_and_no_cycle():
    allowed = allowed_imports()
    assert sorted(allowed) == sorted(subpackages())
    assert all(imports <= allowed.keys() for imports in allowed.values())
    visiting, done = set(), set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in visiting, f"the table allows a cycle: {' → '.join(path + (package,))}"
        if package in done:
            return
        visiting.add(package)
        for imported in allowed[package]:
            visit(imported, path + (package,))
        visiting.discard(package)
        done.add(package)

    for package in allowed:
        visit(package, ())


@pytest.mark.parametrize("package", subpackages())
def test_package_imports_only_what_the_page_allows(package):
    may = allowed_imports()[package] | {package}
    offenders = {str(path.relative_to(REPO_ROOT)): sorted(imported_packages(path) - may)
                 for path in sorted((REPO_ROOT / package).rglob("*.py"))}
    assert not {path: packages for path, packages in offenders.items() if packages}, \
        f"{package} may import only {sorted(may)} (docs/architecture.md)"
