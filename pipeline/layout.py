"""Where one output root keeps the pipeline's artifacts, metadata and pushed models.

Apart from the local runner, which imports TFX, so that `enja history` and `enja rollback`
find a run's files without waiting for TFX to load.
"""
from __future__ import annotations

import os

from ml_metadata.proto import metadata_store_pb2

from enja.pipeline import configs


class OutputLayout:
    """Where one output root keeps the pipeline's artifacts, metadata and pushed models."""

    def __init__(self, output_dir: str, config: configs.PipelineConfig) -> None:
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
        """The SQLite store, created if missing: what TFX's sqlite_metadata_connection_config gives."""
        os.makedirs(os.path.dirname(self.metadata_path), exist_ok=True)
        connection = metadata_store_pb2.ConnectionConfig()
        connection.sqlite.filename_uri = self.metadata_path
        connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        return connection

    def pushed_dir(self, version: int) -> str:
        return os.path.join(self.serving_model_dir, str(version))
