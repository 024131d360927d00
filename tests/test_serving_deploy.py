"""The real TF Serving deployment files parse and agree with each other and the pipeline config."""
import pathlib
import re

import kubernetes_validate
import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from enja.serving import batching_config
from support.deploy import DEPLOY, KUBERNETES_VERSION, MODEL, flags

MODEL_BASE_PATH = f"/models/{MODEL}"


@pytest.fixture(scope="module")
def model_config():
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((DEPLOY / "models.config").read_text(), config)
    return config


def test_model_config_serves_the_pipeline_model(model_config):
    (config,) = model_config.model_config_list.config
    assert config.name == MODEL and config.base_path == MODEL_BASE_PATH
    assert config.model_platform == "tensorflow"
    assert config.model_version_policy.latest.num_versions == 1


def test_batching_parameters_parse():
    params = batching_config.read_batching_parameters(str(DEPLOY / "batching_parameters.txt"))
    assert params.max_batch_size.value > 1 and params.batch_timeout_micros.value > 0
    options = batching_config.batch_options(str(DEPLOY / "batching_parameters.txt"))
    assert options.max_batch_size == params.max_batch_size.value
    assert options.batch_timeout_s == params.batch_timeout_micros.value / 1e6


def test_batching_parameters_reject_typos(tmp_path):
    path = tmp_path / "batching.txt"
    path.write_text("max_batch_sise { value: 8 }\n")
    with pytest.raises(text_format.ParseError):
        batching_config.read_batching_parameters(str(path))


def test_compose_mounts_the_pushed_model_and_the_config_files(compose):
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in compose["volumes"])
    by_target = {target: source for source, target in mounts.items()}
    assert re.fullmatch(r"\$\{ENJA_MODEL_BASE_PATH:-[./]*pipeline_output/serving_model/" + MODEL + r"\}",
                        by_target[MODEL_BASE_PATH])
    args = flags(compose["command"])
    # The config's folder, not the file: a rollback's atomic rename must reach the container.
    config_dir = str(pathlib.PurePosixPath(args["model_config_file"]).parent)
    assert by_target[config_dir] == "."
    assert str(pathlib.PurePosixPath(args["batching_parameters_file"]).parent) == config_dir
    assert int(args["model_config_file_poll_wait_seconds"]) > 0
    assert args["enable_batching"] == "true"
    assert {"127.0.0.1:8500:8500", "127.0.0.1:8501:8501"} <= set(compose["ports"])
    assert (DEPLOY / "../../pipeline/configs.py").resolve().exists(), "relative mount assumes serving/deploy/"


def test_kubernetes_serves_grpc_and_rest_and_probes_the_model(k8s, model_config):
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = flags(container["args"])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"grpc": int(args["port"]), "http": int(args["rest_api_port"])} == {"grpc": 8500,
                                                                                        "http": 8501}
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"].startswith(f"/v1/models/{model_config.model_config_list.config[0].name}")
    assert probe["port"] == "http"
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert mounts[MODEL_BASE_PATH] == "models"
    config_dir = mounts[str(pathlib.PurePosixPath(args["model_config_file"]).parent)]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    service = k8s["Service"]["spec"]
    assert service["selector"] == k8s["Deployment"]["spec"]["selector"]["matchLabels"]
    assert {p["port"] for p in service["ports"]} == {8500, 8501}
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    (generated,) = kustomization["configMapGenerator"]
    assert volumes[config_dir]["configMap"]["name"] == generated["name"]
    assert set(generated["files"]) == {pathlib.Path(args["model_config_file"]).name,
                                       pathlib.Path(args["batching_parameters_file"]).name}
    assert kustomization["resources"] == ["k8s.yaml"]
    # A changed config reaches the pods' mounted file (no subPath, same ConfigMap name), and is read.
    assert not any("subPath" in mount for mount in container["volumeMounts"])
    assert kustomization["generatorOptions"]["disableNameSuffixHash"] is True
    assert int(args["model_config_file_poll_wait_seconds"]) > 0


def _generated_config_map() -> dict:
    """The ConfigMap `kubectl apply -k` builds from the kustomization's generator."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    (generated,) = kustomization["configMapGenerator"]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generated["name"]},
            "data": {name: (DEPLOY / name).read_text() for name in generated["files"]}}


def test_every_kubernetes_manifest_satisfies_the_api_schema():
    documents = [*yaml.safe_load_all((DEPLOY / "k8s.yaml").read_text()), _generated_config_map()]
    assert {document["kind"] for document in documents} == {"Deployment", "Service", "NetworkPolicy",
                                                             "ConfigMap"}
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_server_runs_unprivileged_and_only_clients_reach_it(k8s):
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    writable = {mount["mountPath"] for mount in container["volumeMounts"] if not mount.get("readOnly")}
    assert writable == {"/tmp"}
    assert {probe in container for probe in ("startupProbe", "readinessProbe", "livenessProbe")} == {True}

    policy = k8s["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == k8s["Deployment"]["spec"]["selector"]["matchLabels"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"} and policy["egress"] == []
    (rule,) = policy["ingress"]
    assert {port["port"] for port in rule["ports"]} == {port["containerPort"] for port in container["ports"]}
