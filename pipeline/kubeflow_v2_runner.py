"""Compiles the pipeline for Kubeflow Pipelines v2: a PipelineSpec to upload, not a run.

The pipeline is the local runner's (`create_pipeline`); what differs is passed in. Paths
are URIs the containers read (gs://, or any path tf.io.gfile reads inside the image), and
the schema file is the one the image's installed `enja` package ships. On Kubeflow the
launcher gives each component its ML Metadata connection and KubeflowV2DagRunner ignores
the pipeline's own, so the pipeline gets none. Every component runs our container entrypoint
(pipeline/kubeflow_entrypoint.py, around TFX's v2 one) in one image (Dockerfile) that holds
TFX and the installed `enja` package.

Usage (or `enja kubeflow`, see docs/kubeflow.md):
  compile_pipeline(configs.PRESETS["default"], "pipeline.yaml", image="REGISTRY/enja-nmt:TAG",
                   pipeline_root="gs://BUCKET/root", data_root="gs://BUCKET/corpus",
                   serving_model_dir="gs://BUCKET/serving_model/enja", state_dir="gs://BUCKET/state")
"""
from __future__ import annotations

import json
import os

import yaml
from tfx import v1 as tfx
from tfx.dsl.io import fileio

from enja.pipeline import beam, configs, kubeflow_entrypoint
from enja.pipeline.pipeline import ALWAYS_RUN_NODE_IDS, create_pipeline

# What `docker build -t enja-nmt .` tags; a cluster needs the pushed name (--image).
DEFAULT_IMAGE = "enja-nmt:latest"
# The reviewed schema as the image's installed package ships it (setup.py package_data),
# assuming the TFX 1.16 image's Python is /opt/conda's (a Deep Learning Containers base);
# the Dockerfile fails the build if it is not.
IMAGE_SCHEMA_FILE = "/opt/conda/lib/python3.10/site-packages/enja/pipeline/schema.pbtxt"


def compile_pipeline(config: configs.PipelineConfig, output_file: str, *, pipeline_root: str,
                     data_root: str, serving_model_dir: str, state_dir: str,
                     model_config_file: str = "", image: str = DEFAULT_IMAGE,
                     schema_file: str = IMAGE_SCHEMA_FILE) -> None:
    """Writes the PipelineSpec as YAML, or the whole PipelineJob as JSON for a .json file.

    YAML is what Kubeflow Pipelines uploads; the JSON PipelineJob is what Vertex AI Pipelines
    submits. `state_dir` keeps the data gate's reference; `model_config_file` is the TF Serving
    model config file the servers poll, if any (else they serve the newest version).
    """
    pipeline = create_pipeline(
        config, data_root=data_root, pipeline_root=pipeline_root,
        serving_model_dir=serving_model_dir, state_dir=state_dir,
        metadata_connection_config=None, beam_pipeline_args=beam.pipeline_args(config.beam),
        model_config_file=model_config_file, schema_file=schema_file)
    # Schema 2.1 writes parameters as `constant`, the only form open-source Kubeflow
    # Pipelines' driver accepts (backend/src/v2/driver/resolve.go), and passes every container
    # its component's input definitions, from which our entrypoint rebuilds input artifacts.
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, default_commands=kubeflow_entrypoint.COMMAND,
            use_pipeline_spec_2_1=True))
    job = runner.run(pipeline, write_out=False)
    # TFX puts the root only in the PipelineJob's runtime config, which the YAML form lacks.
    # (Open-source Kubeflow Pipelines takes the root from the run instead: docs/kubeflow.md.)
    job["pipelineSpec"]["defaultPipelineRoot"] = pipeline_root
    _never_cache(job["pipelineSpec"])
    _write(job, output_file)


def _never_cache(spec: dict) -> None:
    """Turns caching off for the tasks that read state outside their inputs: no driver
    fingerprints that state on Kubeflow (pipeline.ALWAYS_RUN_NODE_IDS)."""
    for task_name in ALWAYS_RUN_NODE_IDS:
        spec["root"]["dag"]["tasks"][task_name].pop("cachingOptions", None)


def _write(job: dict, output_file: str) -> None:
    """The PipelineJob as JSON for a .json file, else its PipelineSpec as YAML."""
    parent = os.path.dirname(output_file)
    if parent:
        fileio.makedirs(parent)
    with fileio.open(output_file, "w") as out:
        if output_file.endswith(".json"):
            json.dump(job, out, sort_keys=True, indent=2)
        else:
            yaml.safe_dump(job["pipelineSpec"], out, sort_keys=True)
