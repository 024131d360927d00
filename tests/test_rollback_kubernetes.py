"""`enja rollback` reaches Kubernetes: a ConfigMap manifest to apply, or a patch through the API.

Each test runs the real `enja rollback` (cli.main) on a fake folder of numbered versions and a
copy of serving/deploy/, without ML Metadata, as a rollback of runs made elsewhere does. No
Kubernetes API server can run on this machine, so `FakeApiServer` stands in for one: a small
HTTP server that answers just the ConfigMap GET and PATCH of the core API
(`/api/v1/namespaces/{ns}/configmaps/{name}`), as the API server documents them (a strategic
merge patch of `data`, a 409 when the patch's resourceVersion is stale). The official
`kubernetes` client talks to it through a kubeconfig file, so what is checked is what that
client really sends. Manifests are validated offline against the schemas of Kubernetes 1.30.
"""
from __future__ import annotations

import copy
import http.server
import json
import logging
import os
import re
import shutil
import socket
import threading
from collections.abc import Iterator

import kubernetes_validate
import pytest
import yaml
from google.protobuf import text_format

from enja.pipeline import cli
from enja.serving import model_config
from support.deploy import DEPLOY, KUBERNETES_VERSION, kubernetes_objects

RECIPE_FILES = ("kustomization.yaml", "k8s.yaml", "models.config", "batching_parameters.txt")
MODEL = "enja"
NAMESPACE = "enja"
CONFIGMAP = "enja-serving-config"
TOKEN = "test-token"
CONFIGMAP_PATH = re.compile(r"/api/v1/namespaces/([^/]+)/configmaps/([^/?]+)")


class FakeApiServer(http.server.ThreadingHTTPServer):
    """The ConfigMap endpoints of a Kubernetes API server, over plain HTTP; records requests."""

    def __init__(self, configmaps: dict[tuple[str, str], dict[str, str]]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.objects = {key: {"apiVersion": "v1", "kind": "ConfigMap", "data": dict(data),
                              "metadata": {"namespace": key[0], "name": key[1], "resourceVersion": "1"}}
                        for key, data in configmaps.items()}
        self.requests: list[dict] = []
        self.refuse_patch = False  # RBAC that allows get but not patch
        self.changed_after_get = False  # someone else writes between our GET and PATCH

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FakeApiServer

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _answer(self, status: int, document: dict) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._answer(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": message, "reason": reason, "code": code})

    def _found(self) -> tuple[dict | None, str]:
        match = CONFIGMAP_PATH.fullmatch(self.path.split("?")[0])
        key = match and (match.group(1), match.group(2))
        self.server.requests.append({
            "method": self.command, "path": self.path, "content_type": self.headers.get("Content-Type"),
            "authorization": self.headers.get("Authorization"),
            "body": json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or "null")})
        return (self.server.objects.get(key), key and key[1]) if key else (None, self.path)

    def do_GET(self) -> None:
        found, name = self._found()
        if found is None:
            self._status(404, "NotFound", f'configmaps "{name}" not found')
            return
        answer = copy.deepcopy(found)
        if self.server.changed_after_get:
            found["data"]["batching_parameters.txt"] = "changed by someone else\n"
            found["metadata"]["resourceVersion"] = str(int(found["metadata"]["resourceVersion"]) + 1)
        self._answer(200, answer)

    def do_PATCH(self) -> None:
        found, name = self._found()
        patch = self.server.requests[-1]["body"]
        if found is None:
            self._status(404, "NotFound", f'configmaps "{name}" not found')
            return
        if self.server.refuse_patch:
            self._status(403, "Forbidden", f'configmaps "{name}" is forbidden: User "ci" cannot '
                                           'patch resource "configmaps"')
            return
        if self.server.requests[-1]["content_type"] != "application/strategic-merge-patch+json":
            self._status(415, "UnsupportedMediaType", "not a strategic merge patch")
            return
        stale = patch.get("metadata", {}).get("resourceVersion")
        if stale not in (None, found["metadata"]["resourceVersion"]):
            self._status(409, "Conflict", f'Operation cannot be fulfilled on configmaps "{name}": '
                                          "the object has been modified")
            return
        found["data"].update(patch.get("data", {}))
        found["metadata"]["resourceVersion"] = str(int(found["metadata"]["resourceVersion"]) + 1)
        self._answer(200, found)


@pytest.fixture(autouse=True)
def not_in_a_cluster(monkeypatch) -> None:
    """This machine is no pod; make sure the client never takes it for one, nor reads ~/.kube."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)


@pytest.fixture
def recipe(tmp_path) -> dict[str, str]:
    """A copy of serving/deploy/ and three pushed versions; the base of an `enja rollback`."""
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    for name in RECIPE_FILES:
        shutil.copy(os.path.join(DEPLOY, name), deploy / name)
    versions = tmp_path / "serving_model" / MODEL
    for version in (1, 2, 3):
        (versions / str(version)).mkdir(parents=True)
    config_file = str(deploy / "models.config")
    return {"deploy": str(deploy), "config_file": config_file,
            "args": ["rollback", "--output-dir", str(tmp_path / "no_runs_here"),
                     "--serving-dir", str(versions), "--model-config-file", config_file]}


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    """The recipe's ConfigMap in the cluster; its models.config also lists a model only the cluster has."""
    config = model_config.read_model_config(os.path.join(DEPLOY, "models.config"))
    config.model_config_list.config.add().CopyFrom(
        model_config.model_server_config("other", "/models/other").model_config_list.config[0])
    data = {"models.config": text_format.MessageToString(config),
            "batching_parameters.txt": read(os.path.join(DEPLOY, "batching_parameters.txt"))}
    server = FakeApiServer({(NAMESPACE, CONFIGMAP): data})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def kubeconfig(tmp_path, server_url: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "fake", "cluster": {"server": server_url}}],
        "users": [{"name": "ci", "user": {"token": TOKEN}}],
        "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "ci",
                                                  "namespace": NAMESPACE}}]}))
    return str(path)


def policies(text: str) -> dict[str, str]:
    """Each model's version policy, in one line of text format."""
    config = model_config.parse_model_config(text)
    return {model.name: text_format.MessageToString(model.model_version_policy, as_one_line=True)
            for model in config.model_config_list.config}


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def one_line_error(capsys, caplog) -> str:
    """What `enja rollback` said on stderr, which must be one line: no traceback, and no warning
    logged (the CLI's logging prints them on stderr; pytest captures them in caplog instead)."""
    error = capsys.readouterr().err
    assert error.startswith("enja rollback: ") and error.count("\n") == 1, error
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    return error


PINNED_2 = "specific { versions: 2 }"
LATEST = "latest { num_versions: 1 }"


# --- the manifest ------------------------------------------------------------------------------

def test_the_manifest_validates_holds_the_pin_and_every_file_the_deployment_mounts(recipe, tmp_path, capsys):
    manifest_path = str(tmp_path / "out" / "configmap.yaml")
    os.mkdir(os.path.dirname(manifest_path))
    assert cli.main([*recipe["args"], "--to", "2", "--configmap-manifest", manifest_path]) == 0
    assert f"kubectl apply -f {manifest_path}" in capsys.readouterr().out

    manifest = yaml.safe_load(read(manifest_path))
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    # The ConfigMap the Deployment mounts, with every key: `kubectl apply -f` drops none.
    deployment = kubernetes_objects()["Deployment"]
    volumes = [volume["configMap"]["name"] for volume in deployment["spec"]["template"]["spec"]["volumes"]
               if "configMap" in volume]
    assert volumes == [manifest["metadata"]["name"]] == [CONFIGMAP]
    assert set(manifest["data"]) == {"models.config", "batching_parameters.txt"}
    assert policies(manifest["data"]["models.config"]) == {MODEL: PINNED_2}
    assert manifest["data"]["models.config"] == read(recipe["config_file"])
    assert manifest["data"]["batching_parameters.txt"] == read(os.path.join(DEPLOY,
                                                                            "batching_parameters.txt"))

    assert cli.main([*recipe["args"], "--latest", "--configmap-manifest", manifest_path]) == 0
    assert policies(yaml.safe_load(read(manifest_path))["data"]["models.config"]) == {MODEL: LATEST}


def test_a_failed_manifest_write_keeps_the_old_manifest_and_the_config_file(
        recipe, tmp_path, capsys, caplog, monkeypatch):
    manifest_path = str(tmp_path / "configmap.yaml")
    with open(manifest_path, "w", encoding="utf-8") as f:
        f.write("the previous manifest\n")
    before = read(recipe["config_file"])

    def disk_full(source, destination):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", disk_full)
    assert cli.main([*recipe["args"], "--to", "2", "--configmap-manifest", manifest_path]) == 2
    assert "No space left on device" in one_line_error(capsys, caplog)
    assert read(manifest_path) == "the previous manifest\n"
    assert read(recipe["config_file"]) == before
    left = [name for name in os.listdir(tmp_path) if name.startswith(".partial-")]
    assert not left, "a temporary file is left"


def test_a_config_file_outside_a_kustomization_gets_no_manifest(recipe, tmp_path, capsys, caplog):
    os.remove(os.path.join(recipe["deploy"], "kustomization.yaml"))
    before = read(recipe["config_file"])
    manifest_path = str(tmp_path / "configmap.yaml")
    assert cli.main([*recipe["args"], "--to", "2", "--configmap-manifest", manifest_path]) == 2
    assert "kustomization.yaml" in one_line_error(capsys, caplog)
    assert not os.path.exists(manifest_path) and read(recipe["config_file"]) == before


# --- through the API ---------------------------------------------------------------------------

def test_the_api_patch_pins_the_configmap_then_the_file(recipe, api, tmp_path, capsys):
    config = kubeconfig(tmp_path, api.url)
    assert cli.main([*recipe["args"], "--to", "2", "--kubernetes-configmap", f"{NAMESPACE}/{CONFIGMAP}",
                     "--kubeconfig", config]) == 0
    assert f"ConfigMap {NAMESPACE}/{CONFIGMAP}" in capsys.readouterr().out

    path = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{CONFIGMAP}"
    get, patch = api.requests
    assert (get["method"], get["path"].split("?")[0]) == ("GET", path)
    assert (patch["method"], patch["path"].split("?")[0]) == ("PATCH", path)
    assert {get["authorization"], patch["authorization"]} == {f"Bearer {TOKEN}"}
    assert patch["content_type"] == "application/strategic-merge-patch+json"
    # One key, guarded by the version read; the cluster's own config changed, its other model kept.
    assert set(patch["body"]) == {"metadata", "data"} and set(patch["body"]["data"]) == {"models.config"}
    assert patch["body"]["metadata"] == {"resourceVersion": "1"}
    assert policies(patch["body"]["data"]["models.config"]) == {MODEL: PINNED_2, "other": LATEST}
    data = api.objects[(NAMESPACE, CONFIGMAP)]["data"]
    assert data["models.config"] == patch["body"]["data"]["models.config"]
    assert data["batching_parameters.txt"] == read(os.path.join(DEPLOY, "batching_parameters.txt"))
    assert policies(read(recipe["config_file"])) == {MODEL: PINNED_2}

    # Undone, in the namespace of the kubeconfig's context.
    assert cli.main([*recipe["args"], "--latest", "--kubernetes-configmap", CONFIGMAP, "--kubeconfig",
                     config]) == 0
    assert api.requests[-1]["path"].split("?")[0] == path
    assert policies(data["models.config"]) == {MODEL: LATEST, "other": LATEST}
    assert policies(read(recipe["config_file"])) == {MODEL: LATEST}


@pytest.mark.parametrize(("refusal", "status"), [("refuse_patch", "403 Forbidden"),
                                             ("changed_after_get", "409 Conflict")])
def test_a_refused_patch_leaves_the_config_file_and_the_configmap_as_they_were(
        recipe, api, tmp_path, capsys, caplog, refusal, status):
    setattr(api, refusal, True)
    before = read(recipe["config_file"])
    assert cli.main([*recipe["args"], "--to", "2", "--kubernetes-configmap", f"{NAMESPACE}/{CONFIGMAP}",
                     "--kubeconfig", kubeconfig(tmp_path, api.url)]) == 2
    assert status in one_line_error(capsys, caplog)
    assert [request["method"] for request in api.requests] == ["GET", "PATCH"]
    assert read(recipe["config_file"]) == before
    assert policies(api.objects[(NAMESPACE, CONFIGMAP)]["data"]["models.config"])[MODEL] == LATEST


def test_a_missing_configmap_is_one_line_and_changes_nothing(recipe, api, tmp_path, capsys, caplog):
    before = read(recipe["config_file"])
    assert cli.main([*recipe["args"], "--to", "2", "--kubernetes-configmap", f"{NAMESPACE}/nope",
                     "--kubeconfig", kubeconfig(tmp_path, api.url)]) == 2
    error = one_line_error(capsys, caplog)
    assert "ConfigMap enja/nope: 404 Not Found" in error and 'configmaps "nope" not found' in error
    assert [request["method"] for request in api.requests] == ["GET"]
    assert read(recipe["config_file"]) == before


def test_an_unreachable_api_is_one_line_and_changes_nothing(recipe, tmp_path, capsys, caplog):
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = read(recipe["config_file"])
    assert cli.main([*recipe["args"], "--to", "2", "--kubernetes-configmap", CONFIGMAP,
                     "--kubeconfig", kubeconfig(tmp_path, f"http://127.0.0.1:{port}")]) == 2
    assert one_line_error(capsys, caplog) == (f"enja rollback: cannot reach the Kubernetes API at "
                                      f"http://127.0.0.1:{port}: [Errno 111] Connection refused\n")
    assert read(recipe["config_file"]) == before


def test_no_kubeconfig_is_one_line_and_changes_nothing(recipe, tmp_path, capsys, caplog):
    before = read(recipe["config_file"])
    assert cli.main([*recipe["args"], "--to", "2", "--kubernetes-configmap", CONFIGMAP,
                     "--kubeconfig", str(tmp_path / "missing")]) == 2
    assert "no Kubernetes API to reach" in one_line_error(capsys, caplog)
    assert read(recipe["config_file"]) == before
