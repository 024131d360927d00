"""`enja rollback` on Kubernetes: the recipe's ConfigMap as a manifest, or patched through the API.

The pods of serving/deploy/k8s.yaml read models.config from a ConfigMap mounted as a folder,
so on Kubernetes a rollback is served only once that ConfigMap changes. It is written one of
two ways: a whole manifest for `kubectl apply -f`, holding every key the kustomization
generates (applying it then drops none the Deployment mounts), or one key patched through the
API with the official client. The `kubernetes` package is imported only for the API: it takes
seconds to load.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import yaml

from enja.serving import files

if TYPE_CHECKING:
    from kubernetes import client

KUSTOMIZATION = "kustomization.yaml"
# The key TF Serving's --model_config_file names in serving/deploy/k8s.yaml (/config/models.config).
MODEL_CONFIG_KEY = "models.config"
POD_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
REQUEST_TIMEOUT_S = 30
# An object name (DNS subdomain) or namespace; also keeps '/' out of the API paths.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
# What the pods need after a write, in docs/serving.md's words.
_FOLLOW = "pods serve it within about two minutes (kubelet sync, then TF Serving's 30 s poll)"

# Changes a model config's text; the second argument names where it came from, for errors.
Change = Callable[[str, str], str]


class KubernetesError(RuntimeError):
    """The ConfigMap cannot be built, read or written; the message says why in one line."""


@dataclasses.dataclass(frozen=True)
class ConfigMapRef:
    name: str
    namespace: str | None = None  # None: the kubeconfig context's namespace, or the pod's

    @classmethod
    def parse(cls, text: str) -> ConfigMapRef:
        """`[NAMESPACE/]NAME`, as kubectl users write it."""
        namespace, slash, name = text.rpartition("/")
        if not all(_NAME.fullmatch(part) for part in ([namespace] if slash else []) + [name]):
            raise KubernetesError(f"ConfigMap {text!r} is not [NAMESPACE/]NAME (lowercase DNS names)")
        return cls(name, namespace if slash else None)

    def __str__(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}" if self.namespace else f"ConfigMap {self.name}"


@dataclasses.dataclass(frozen=True)
class Targets:
    """Where a rollback reaches Kubernetes besides the local file: none, one or both."""

    manifest: str | None = None  # a path for `kubectl apply -f`
    configmap: ConfigMapRef | None = None  # patched through the API
    kubeconfig: str | None = None  # None: in-cluster config, else the client's default kubeconfig


# --- as a manifest -------------------------------------------------------------------------------

def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as error:
        raise KubernetesError(f"cannot read {path}: {error}") from error


def recipe_config_map(config_file: str, config_text: str) -> dict[str, Any]:
    """The ConfigMap `kubectl apply -k` builds from the config file's folder, holding
    `config_text` for the file and every other file its generator lists, as they are."""
    folder = os.path.dirname(os.path.abspath(config_file))
    key = os.path.basename(config_file)
    kustomization = os.path.join(folder, KUSTOMIZATION)
    try:
        generators = (yaml.safe_load(_read(kustomization)) or {}).get("configMapGenerator", [])
    except yaml.YAMLError as error:
        raise KubernetesError(f"{kustomization}: not YAML: {error}".replace("\n", " ")) from error
    listing = [generator for generator in generators if key in generator.get("files", [])]
    if len(listing) != 1:
        raise KubernetesError(f"{kustomization}: {len(listing)} configMapGenerators list {key}, not one, so "
                              "there is no one ConfigMap to write (the recipe's folder is serving/deploy/)")
    (generator,) = listing
    dropped = sorted({"literals", "envs"} & set(generator))
    if dropped:
        raise KubernetesError(f"{kustomization}: ConfigMap {generator['name']} also has "
                              f"{', '.join(dropped)}, which a manifest of its files would drop")
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]},
            "data": {name: config_text if name == key else _read(os.path.join(folder, name))
                     for name in generator["files"]}}


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the manifest reads like the files it holds."""


_BlockDumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def write_manifest(path: str, manifest: dict[str, Any]) -> str:
    """Replace `path` atomically, so a failure leaves the old manifest or none, never half of one."""
    text = f"# `kubectl apply -f {os.path.basename(path)}`: written by `enja rollback`.\n" + yaml.dump(
        manifest, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True)
    try:
        files.write_atomically(path, text.encode("utf-8"))
    except OSError as error:
        raise KubernetesError(f"cannot write {path}: {error}") from error
    return f"Wrote ConfigMap {manifest['metadata']['name']} to {path}: `kubectl apply -f {path}`; {_FOLLOW}."


# --- through the API -----------------------------------------------------------------------------

def _innermost(error: BaseException) -> BaseException:
    """The error at the bottom of a chain: urllib3's own messages hold object addresses."""
    while error.__cause__ or error.__context__:
        error = error.__cause__ or error.__context__
    return error


def _api_message(body: Any) -> str:
    """The API server's own one-line reason (a Status object's `message`), when it sent one."""
    try:
        return json.loads(body)["message"].replace("\n", " ")
    except (TypeError, ValueError, KeyError, AttributeError):
        return "no reason given"


@contextlib.contextmanager
def _reported(what: object, host: str) -> Iterator[None]:
    """The client's errors as KubernetesErrors of one line."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as error:
        raise KubernetesError(f"{what}: {error.status} {error.reason}: {_api_message(error.body)}") from error
    except HTTPError as error:
        raise KubernetesError(f"cannot reach the Kubernetes API at {host}: {_innermost(error)}") from error


def _configure(configuration: client.Configuration, kubeconfig: str | None) -> str:
    """Load the pod's service account when running in a cluster and no kubeconfig is named, else
    the kubeconfig ($KUBECONFIG or ~/.kube/config by default); returns the default namespace."""
    from kubernetes import config

    if kubeconfig is None:
        with contextlib.suppress(config.ConfigException):
            config.load_incluster_config(client_configuration=configuration)
            return _read(POD_NAMESPACE_FILE).strip() if os.path.exists(POD_NAMESPACE_FILE) else "default"
    try:
        config.load_kube_config(kubeconfig, client_configuration=configuration, persist_config=False)
        return config.list_kube_config_contexts(kubeconfig)[1]["context"].get("namespace", "default")
    except config.ConfigException as error:
        where = kubeconfig or "not in a cluster, and the default kubeconfig"
        raise KubernetesError(f"no Kubernetes API to reach ({where}): {error}") from error


def _core_api(kubeconfig: str | None) -> tuple[client.CoreV1Api, str]:
    """A client and its default namespace. Requests are not retried: urllib3 would log each retry
    on stderr, and a failed request has written nothing, so rerunning is safe."""
    from kubernetes import client

    configuration = client.Configuration()
    namespace = _configure(configuration, kubeconfig)
    configuration.retries = 0
    return client.CoreV1Api(client.ApiClient(configuration)), namespace


@dataclasses.dataclass(frozen=True)
class LiveConfigMap:
    """A ConfigMap as read through the API; written back only if nobody changed it since."""

    api: client.CoreV1Api
    ref: ConfigMapRef  # with its namespace
    data: dict[str, str]
    resource_version: str

    @classmethod
    def read(cls, ref: ConfigMapRef, kubeconfig: str | None) -> LiveConfigMap:
        api, namespace = _core_api(kubeconfig)
        ref = dataclasses.replace(ref, namespace=ref.namespace or namespace)
        with _reported(ref, api.api_client.configuration.host):
            found = api.read_namespaced_config_map(ref.name, ref.namespace,
                                                   _request_timeout=REQUEST_TIMEOUT_S)
        return cls(api, ref, dict(found.data or {}), found.metadata.resource_version)

    def text(self, key: str) -> str:
        if key not in self.data:
            keys = ", ".join(sorted(self.data)) or "none"
            raise KubernetesError(f"{self.ref} has no key {key} (keys: {keys})")
        return self.data[key]

    def patch(self, key: str, text: str) -> str:
        """Replace one key (a strategic merge patch keeps the others). The resourceVersion makes
        the API server refuse it (409) if the ConfigMap changed since it was read."""
        body = {"metadata": {"resourceVersion": self.resource_version}, "data": {key: text}}
        with _reported(self.ref, self.api.api_client.configuration.host):
            self.api.patch_namespaced_config_map(self.ref.name, self.ref.namespace, body,
                                                 _request_timeout=REQUEST_TIMEOUT_S)
        return f"Patched {key} in {self.ref}; {_FOLLOW}."


def prepare(targets: Targets, config_file: str, config_text: str, change: Change) -> list[Callable[[], str]]:
    """Read and check all the targets need, writing nothing; returns their writes, manifest
    first, each saying what it did. The ConfigMap gets `change` made to its own models.config."""
    writes: list[Callable[[], str]] = []
    if targets.manifest is not None:
        manifest = recipe_config_map(config_file, config_text)
        writes.append(functools.partial(write_manifest, targets.manifest, manifest))
    if targets.configmap is not None:
        live = LiveConfigMap.read(targets.configmap, targets.kubeconfig)
        changed = change(live.text(MODEL_CONFIG_KEY), f"{live.ref}, key {MODEL_CONFIG_KEY}")
        writes.append(functools.partial(live.patch, MODEL_CONFIG_KEY, changed))
    return writes
