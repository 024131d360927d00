"""Runs the pipeline locally: LocalDagRunner, the configured Beam runner, SQLite ML Metadata."""
from __future__ import annotations

import os

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from enja.pipeline import beam, configs, data, history
from enja.pipeline.pipeline import create_pipeline
from enja.serving import model_config


class OutputLayout:
    """Where one output root keeps the pipeline's artifacts, metadata and pushed models."""

    def __init__(self, output_dir: str, config: configs.PipelineConfig):
        self.output_dir = os.path.abspath(output_dir)
        self.pipeline_root = os.path.join(self.output_dir, "tfx", config.pipeline_name)
        self.metadata_path = os.path.join(self.output_dir, "metadata", "metadata.db")
        self.serving_model_dir = os.path.join(
            self.output_dir, "serving_model", config.serving.model_name)
        # The TF Serving model config file that `enja serve` polls and `enja rollback` edits.
        self.model_config_file = os.path.join(self.output_dir, "models.config")
        # State the pipeline keeps between runs outside ML Metadata (the data gate's reference).
        self.state_dir = os.path.join(self.output_dir, "state")

    def metadata_connection(self) -> metadata_store_pb2.ConnectionConfig:
        return tfx.orchestration.metadata.sqlite_metadata_connection_config(self.metadata_path)

    def pushed_dir(self, version: int) -> str:
        return os.path.join(self.serving_model_dir, str(version))


def run(preset: str = configs.DEFAULT_PRESET, data_root: str | None = None,
        output_dir: str = "pipeline_output",
        config: configs.PipelineConfig | None = None) -> history.RunRecord:
    """Runs the pipeline with a preset (or an explicit config); returns what the run did."""
    config = config or configs.PRESETS[preset]
    layout = OutputLayout(output_dir, config)
    os.makedirs(os.path.dirname(layout.metadata_path), exist_ok=True)
    model_config.write_initial_model_config(
        layout.model_config_file, config.serving.model_name, layout.serving_model_dir)
    pipeline = create_pipeline(
        config,
        data_root=data.resolve_data_root(data_root),
        pipeline_root=layout.pipeline_root,
        serving_model_dir=layout.serving_model_dir,
        state_dir=layout.state_dir,
        metadata_connection_config=layout.metadata_connection(),
        beam_pipeline_args=beam.pipeline_args(config.beam),
        model_config_file=layout.model_config_file)
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    except Exception:
        # The data gate ends a run on anomalies by failing: an outcome, not an error.
        record = history.latest_run(layout.metadata_connection())
        if record.data_passed is not False:
            raise
        return record
    return history.latest_run(layout.metadata_connection())
