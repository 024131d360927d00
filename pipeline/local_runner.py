"""Runs the pipeline locally: LocalDagRunner, the configured Beam runner, SQLite ML Metadata."""
from __future__ import annotations

import logging
import os

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from enja.pipeline import beam, configs, data, history
from enja.pipeline.pipeline import REFERENCE_RESOLVER_ID, create_pipeline
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

    def metadata_connection(self) -> metadata_store_pb2.ConnectionConfig:
        return tfx.orchestration.metadata.sqlite_metadata_connection_config(self.metadata_path)

    def pushed_dir(self, version: int) -> str:
        return os.path.join(self.serving_model_dir, str(version))


class _FirstRunReferenceFilter(logging.Filter):
    """Drops the traceback TFX logs when no accepted statistics exist yet.

    On a first run the LatestArtifactStrategy resolver of the data gate's reference finds
    nothing, which TFX logs as an input-resolution error with a traceback although the run
    goes on and the gate checks the data against the schema alone.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.ERROR and record.args
                    and record.args[0] == REFERENCE_RESOLVER_ID and "returned None" in str(record.args))


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
        metadata_connection_config=layout.metadata_connection(),
        beam_pipeline_args=beam.pipeline_args(config.beam))
    quiet = _FirstRunReferenceFilter()
    logging.getLogger("absl").addFilter(quiet)
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    except Exception:
        # The data gate ends a run on anomalies by failing: an outcome, not an error.
        record = history.latest_run(layout.metadata_connection())
        if record.data_passed is not False:
            raise
        return record
    finally:
        logging.getLogger("absl").removeFilter(quiet)
    return history.latest_run(layout.metadata_connection())
