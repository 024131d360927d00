"""Dependencies point one way: every import between the project's packages is one that
docs/architecture.md's table of packages allows, and the table allows no cycle."""
from __future__ import annotations

import ast
import pathlib
import re

import pytest
import setuptools

from support.paths import REPO_ROOT

ARCHITECTURE = REPO_ROOT / "docs" / "architecture.md"
# A row of the table: | `package` | what it holds | the packages it may import, or — |
ROW = re.compile(r"^\| `([\w.]+)` \|.*\| ([\w., —]+) \|$")


def allowed_imports() -> dict[str, set[str]]:
    """Each package the page lists, and the packages it may import."""
    allowed = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        if match := ROW.match(line):
            package, imports = match.groups()
            allowed[package] = {name.strip() for name in imports.split(",")} - {"—"}
    return allowed


def top_level_packages() -> tuple[str, ...]:
    """setup.py's SUBPACKAGES: the folders the `enja` namespace installs."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text(encoding="utf-8"))
    (names,) = [node.value for node in tree.body
                if isinstance(node, ast.Assign) and node.targets[0].id == "SUBPACKAGES"]
    return tuple(ast.literal_eval(names))


def installed_packages() -> list[str]:
    """Every package setup.py installs, as `models.training` for `enja.models.training`."""
    return sorted([*top_level_packages(),
                   *(f"{top}.{inner}" for top in top_level_packages()
                     for inner in setuptools.find_packages(REPO_ROOT / top))])


def package_of(module: str, packages: set[str]) -> str | None:
    """The innermost listed package holding `module` (dotted, without `enja.`)."""
    holders = [p for p in packages if module == p or module.startswith(f"{p}.")]
    return max(holders, key=len, default=None)


def imported_modules(path: pathlib.Path) -> set[str]:
    """What a module imports from the project (`models.training.trainer`, or
    `models.config.ModelConfig` for a name from a module), at the top or inside functions."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {module.removeprefix("enja.") for module in modules if module.startswith("enja.")}


def test_the_page_lists_every_package_and_no_cycle():
    allowed = allowed_imports()
    assert sorted(allowed) == installed_packages()
    assert all(imports <= allowed.keys() for imports in allowed.values())
    visiting, done = set(), set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in visiting, f"the table allows a cycle: {' → '.join((*path, package))}"
        if package in done:
            return
        visiting.add(package)
        for imported in allowed[package]:
            visit(imported, (*path, package))
        visiting.discard(package)
        done.add(package)

    for package in allowed:
        visit(package, ())


@pytest.mark.parametrize("package", installed_packages())
def test_package_imports_only_what_the_page_allows(package):
    allowed = allowed_imports()
    may = allowed[package] | {package}
    offenders = {}
    for path in sorted((REPO_ROOT / package.replace(".", "/")).rglob("*.py")):
        module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
        if package_of(module, set(allowed)) != package:
            continue  # a module of a package inside this one: checked as that package
        imported = {package_of(name, set(allowed)) for name in imported_modules(path)}
        if bad := sorted(imported - may - {None}):
            offenders[str(path.relative_to(REPO_ROOT))] = bad
    assert not offenders, f"{package} may import only {sorted(may)} (docs/architecture.md)"
