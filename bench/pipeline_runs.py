"""Where a local pipeline run keeps what the benchmarks read.

Artifacts live at <output-dir>/tfx/<pipeline>/<Component>/<output>/<execution id>
(TFX's local layout, see enja.pipeline.local_runner.OutputLayout); the newest
execution wins. Timings come from the run's ML Metadata store.
"""
from __future__ import annotations

import os

from tfx import v1 as tfx
from tfx.orchestration import metadata

from enja.pipeline import configs
from enja.pipeline.local_runner import OutputLayout


def latest_output(output_dir: str, component: str, output: str,
                  config: configs.PipelineConfig = configs.PipelineConfig()) -> str:
    """The newest execution's directory of one component output."""
    parent = os.path.join(OutputLayout(output_dir, config).pipeline_root, component, output)
    executions = [name for name in os.listdir(parent) if name.isdigit()] if os.path.isdir(parent) else []
    if not executions:
        raise FileNotFoundError(f"No {component} {output} under {parent}: run the pipeline first.")
    return os.path.join(parent, max(executions, key=int))


def pipeline_seconds(output_dir: str,
                     config: configs.PipelineConfig = configs.PipelineConfig()) -> float:
    """Wall time from the first component's start to the last one's end, cached ones excluded."""
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        OutputLayout(output_dir, config).metadata_path)
    with metadata.Metadata(connection) as store:
        executions = [execution for execution in store.store.get_executions()
                      if execution.last_known_state == execution.COMPLETE]
    if not executions:
        raise ValueError(f"{output_dir} records no completed component.")
    start = min(execution.create_time_since_epoch for execution in executions)
    end = max(execution.last_update_time_since_epoch for execution in executions)
    return (end - start) / 1000
