"""The TF Serving deployment recipes in serving/deploy/, parsed as docker compose and kubectl read them."""
from __future__ import annotations

import pathlib

import yaml

from enja.serving import batching_config
from enja.serving.config import ServingConfig

DEPLOY = pathlib.Path(batching_config.__file__).parent / "deploy"
MODEL = ServingConfig.model_name
# The Kubernetes API version whose schemas the manifests must satisfy (strict: no unknown fields).
KUBERNETES_VERSION = "1.30"


def compose_service() -> dict:
    """The model's service in docker-compose.yaml."""
    return yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())["services"][MODEL]


def kubernetes_objects() -> dict[str, dict]:
    """k8s.yaml's objects by kind."""
    return {document["kind"]: document for document in yaml.safe_load_all((DEPLOY / "k8s.yaml").read_text())}


def flags(args: list[str]) -> dict[str, str]:
    """A command line of --flag=value arguments as {flag: value}."""
    return dict(arg.removeprefix("--").split("=", 1) for arg in args)
