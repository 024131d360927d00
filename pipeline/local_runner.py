"""Runs the pipeline locally: LocalDagRunner, Beam's DirectRunner, SQLite ML Metadata."""
from __future__ import annotations

import os

from tfx import v1 as tfx
from tfx.orchestration import metadata

from enja.pipeline import configs, data
from enja.pipeline.pipeline import create_pipeline


class OutputLayout:
    """Where one output root keeps the pipeline's artifacts, metadata and pushed models."""

    def __init__(self, output_dir: str, config: configs.PipelineConfig):
        self.output_dir = os.path.abspath(output_dir)
        self.pipeline_root = os.path.join(self.output_dir, "tfx", config.pipeline_name)
        self.metadata_path = os.path.join(self.output_dir, "metadata", "metadata.db")
        self.serving_model_dir = os.path.join(
            self.output_dir, "serving_model", config.serving.model_name)


def latest_push(metadata_path: str) -> str | None:
    """The directory the latest Pusher run copied a model to, or None if it pushed nothing."""
    with metadata.Metadata(
            tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)) as store:
        pushed = store.store.get_artifacts_by_type("PushedModel")
    if not pushed:
        return None
    latest = max(pushed, key=lambda artifact: artifact.id)
    if latest.custom_properties["pushed"].int_value != 1:
        return None
    return latest.custom_properties["pushed_destination"].string_value


def run(preset: str = configs.DEFAULT_PRESET, data_root: str | None = None,
        output_dir: str = "pipeline_output",
        config: configs.PipelineConfig | None = None) -> str | None:
    """Runs the pipeline with a preset (or an explicit config); returns the pushed model dir."""
    config = config or configs.PRESETS[preset]
    layout = OutputLayout(output_dir, config)
    os.makedirs(os.path.dirname(layout.metadata_path), exist_ok=True)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(
        config,
        data_root=data.resolve_data_root(data_root),
        pipeline_root=layout.pipeline_root,
        serving_model_dir=layout.serving_model_dir,
        metadata_path=layout.metadata_path,
        beam_pipeline_args=list(config.beam_pipeline_args)))
    return latest_push(layout.metadata_path)
