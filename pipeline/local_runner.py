"""Runs the pipeline locally: LocalDagRunner, the configured Beam runner, SQLite ML Metadata."""
from __future__ import annotations

import os

from tfx import v1 as tfx

from enja.pipeline import beam, configs, data, progress
from enja.pipeline.layout import OutputLayout
from enja.pipeline.operations import history, lineage
from enja.pipeline.pipeline import create_pipeline
from enja.serving import model_config


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
    estimates = lineage.Lineage(layout.metadata_connection()).last_seconds()
    try:
        with progress.reporting([component.id for component in pipeline.components], estimates):
            tfx.orchestration.LocalDagRunner().run(pipeline)
    except Exception:
        # The data gate ends a run on anomalies by failing: an outcome, not an error.
        record = history.latest_run(layout.metadata_connection())
        if record.data_passed is not False:
            raise
        return record
    return history.latest_run(layout.metadata_connection())
