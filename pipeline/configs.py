"""Every setting of the pipeline, in one place, with named presets.

The groups map onto the components that read them: `data` → ExampleGen, `vocab` →
Transform, `model`/`training` → Trainer, `decoding`/`serving` → ServingExport,
`evaluation` → Evaluator, `serving` also → InfraCheck and the model server. Transform,
Trainer and ServingExport receive only their own groups, so changing the model does not
invalidate the cached vocabularies, and changing the decoding re-exports the cached
Trainer's model without training it again.
`beam` chooses where every Beam-powered component runs (`enja.pipeline.beam`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from enja.components.config import DataConfig
from enja.models.config import DecodingConfig, ModelConfig, TrainingConfig
from enja.pipeline import beam
from enja.preprocessing.config import VocabConfig
from enja.serving.config import ServingConfig


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    # A model is blessed only with dev BLEU (sacreBLEU, 0–100) at least this high …
    bleu_floor: float = 10.0
    # … and at most this many BLEU points below the model in production.
    regression_tolerance: float = 0.0


@dataclasses.dataclass(frozen=True)
class BeamConfig:
    """The Beam runner of ExampleGen, StatisticsGen, Transform and Evaluator, by name.

    `beam.pipeline_args` turns it into Beam's arguments; a bad choice or a missing
    setting fails when the config is made, before any component runs.
    """

    # in_memory      DirectRunner in this process: tests and the default (worker processes
    #                would each pay TensorFlow's import, which data this small does not repay).
    # multi_process  DirectRunner with `direct_num_workers` worker processes on this machine.
    # dataflow       Google Cloud Dataflow: needs `project`, `region`, `temp_location` (gs://…)
    #                and `sdk_container_image`, an image holding enja and TFX (Dataflow's stock
    #                image has neither, and TFX ships only itself to workers).
    # flink, spark   PortableRunner, through the Flink or Spark job server at `job_endpoint`
    #                (host:port), SDK workers started as `environment_type` says.
    # Not Dask: Beam's DaskRunner translates too few of Beam's transforms for TFX's components
    # (bench/beam_runners.py shows which fail, and how).
    runner: str = "in_memory"
    # multi_process: worker processes (0: one per CPU core).
    direct_num_workers: int = 2
    # dataflow: the Google Cloud project, its region, and a gs:// folder for temporary files.
    project: str = ""
    region: str = ""
    temp_location: str = ""
    # dataflow: the worker image (it must hold enja, e.g. the pipeline's own image).
    sdk_container_image: str = ""
    # flink, spark: the job server's host:port.
    job_endpoint: str = ""
    # flink, spark: how the job server starts SDK workers — DOCKER (`environment_config` is
    # an image holding enja), PROCESS (`environment_config` is the JSON with the worker's
    # boot command), EXTERNAL (`environment_config` is a worker pool's host:port), or
    # LOOPBACK (this process runs the work: for trying a local job server).
    environment_type: str = "DOCKER"
    environment_config: str = ""

    def __post_init__(self) -> None:
        beam.pipeline_args(self)  # Raises on a bad setting, naming it.


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    pipeline_name: str = "enja"
    data: DataConfig = DataConfig()
    vocab: VocabConfig = VocabConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    decoding: DecodingConfig = DecodingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    serving: ServingConfig = ServingConfig()
    beam: BeamConfig = BeamConfig()

    def transform_config(self) -> dict[str, Any]:
        """What Transform's preprocessing_fn reads (its `custom_config`)."""
        return {"vocab": dataclasses.asdict(self.vocab)}

    def trainer_config(self) -> dict[str, Any]:
        """What the Trainer's run_fn reads (its `custom_config`)."""
        return {
            "model": dataclasses.asdict(self.model),
            "training": dataclasses.asdict(self.training),
        }

    def export_config(self) -> dict[str, Any]:
        """What ServingExport reads: its `decoding` and `serving` arguments."""
        return {"decoding": self.decoding, "serving": self.serving}


# The setting groups: the PipelineConfig fields that are themselves dataclasses.
GROUPS = tuple(f.name for f in dataclasses.fields(PipelineConfig)
               if dataclasses.is_dataclass(f.default))


def replace(config: PipelineConfig, **groups: dict[str, Any]) -> PipelineConfig:
    """Returns `config` with fields of named groups overridden, e.g. training={"epochs": 2}."""
    changes = {
        name: dataclasses.replace(getattr(config, name), **fields)
        for name, fields in groups.items()
    }
    return dataclasses.replace(config, **changes)


def _parse_value(text: str, current: Any, setting: str) -> Any:
    """`text` as the type of the setting's current value."""
    if isinstance(current, bool):
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{setting} takes true or false, not {text!r}")
        return text.lower() == "true"
    if isinstance(current, (int, float, str)):
        try:
            return type(current)(text)
        except ValueError:
            raise ValueError(f"{setting} takes a {type(current).__name__}, not {text!r}") from None
    raise ValueError(f"{setting} cannot be set from the command line")


def with_overrides(config: PipelineConfig, settings: Sequence[str]) -> PipelineConfig:
    """Applies "group.field=value" settings (e.g. "training.epochs=2") on top of a preset."""
    groups: dict[str, dict[str, Any]] = {}
    for setting in settings:
        name, sep, text = setting.partition("=")
        group, dot, field = name.strip().partition(".")
        if not (sep and dot) or group not in GROUPS:
            raise ValueError(f"expected group.field=value with a group of {GROUPS}, "
                             f"not {setting!r}")
        fields = {f.name for f in dataclasses.fields(getattr(config, group))}
        if field not in fields:
            raise ValueError(f"{group} has no setting {field!r}; it has {sorted(fields)}")
        groups.setdefault(group, {})[field] = _parse_value(
            text.strip(), getattr(getattr(config, group), field), name)
    return replace(config, **groups)


PRESETS: dict[str, PipelineConfig] = {
    # The first 300 pairs of the latest span and of dev, and a tiny model: what the
    # end-to-end tests run.
    "smoke": replace(
        PipelineConfig(),
        data={"max_pairs": 300, "window_spans": 1},
        model={"embedding_dim": 16, "units": 32, "dropout": 0.0},
        training={"batch_size": 32, "epochs": 10, "learning_rate": 1e-2,
                  "early_stopping_patience": 0},
        evaluation={"bleu_floor": 0.01},
    ),
    # A first look in under ten minutes of pipeline: the default's design, narrower, its
    # learning rate decayed over 3 epochs, trained with the step levers that learn the same
    # per epoch in less time (docs/quality.md, issue #24).
    "quick": replace(PipelineConfig(),
                     model={"embedding_dim": 192, "units": 192, "project_inputs_once": True},
                     training={"epochs": 3, "precision": "mixed_bfloat16"}),
    # Data arriving span by span (`enja continuous`): every run trains the default model on
    # all spans so far, the first from scratch for 6 epochs, later ones warm-started from
    # the model in production for 2 epochs at a quarter of the learning rate.
    "continuous": replace(
        PipelineConfig(),
        training={"epochs": 6, "warm_start_epochs": 2, "warm_start_learning_rate": 5e-4}),
    # The best translator found for about an hour of pipeline on 2 CPU cores: a 384-unit model
    # (a 2 × 192 encoder) for 8 epochs with its weights averaged, decoded with a beam of 8
    # (docs/quality.md has every candidate and what it scored).
    "default": replace(PipelineConfig(), model={"units": 384},
                       training={"epochs": 8, "weight_averaging": 0.999},
                       decoding={"beam_width": 8}),
    # The seed article's model, the baseline users read about: no attention, 1024-unit
    # LSTMs, no dropout, 20 epochs, greedy decoding.
    "seed": replace(
        PipelineConfig(),
        model={"units": 1024, "attention": "none", "dropout": 0.0, "bidirectional": False},
        training={"epochs": 20, "early_stopping_patience": 0,
                  "learning_rate_schedule": "constant", "label_smoothing": 0.0},
        decoding={"beam_width": 1},
    ),
}
DEFAULT_PRESET = "default"
