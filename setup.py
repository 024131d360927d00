"""Packaging for the English→Japanese TFX pipeline.

Each top-level folder of the repository is a subpackage of the `enja` namespace
(`pipeline/` is `enja.pipeline`, …), so TFX components can name our functions by
dotted path from the installed package instead of shipping a module file.
"""
from setuptools import find_packages, setup

SUBPACKAGES = ("components", "models", "pipeline", "preprocessing", "serving")

setup(
    name="enja-nmt",
    version="0.1.0",
    description="English→Japanese neural machine translation as a TFX pipeline",
    python_requires=">=3.10,<3.11",
    # Each folder and the packages inside it (pipeline/operations/ is enja.pipeline.operations).
    packages=[f"enja.{name}" for name in SUBPACKAGES]
    + [f"enja.{name}.{inner}" for name in SUBPACKAGES for inner in find_packages(name)],
    package_dir={f"enja.{name}": name for name in SUBPACKAGES},
    # The reviewed schema is read at run time (ImportSchemaGen), in the Kubeflow image too.
    package_data={"enja.pipeline": ["schema.pbtxt"], "enja.serving": ["deploy/*", "deploy/**/*"]},
    entry_points={"console_scripts": ["enja = enja.pipeline.cli:main"]},
)
