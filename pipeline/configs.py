"""Every setting of the pipeline, in one place, with named presets.

The groups map onto the components that read them: `data` → ExampleGen, `vocab` →
Transform, `model`/`training`/`decoding` → Trainer, `evaluation` → Evaluator,
`serving` → Pusher and the model server. Transform and Trainer receive only their
own groups, so changing the model does not invalidate the cached vocabularies.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence


@dataclasses.dataclass(frozen=True)
class DataConfig:
    # Source-side (English) file patterns relative to the data root; the Japanese file
    # is the same name with the language code swapped. `train.en.{SPAN:3}` reads the
    # zero-padded span files (train.en.000 …) as TFX spans, the latest by default.
    train_pattern: str = "train.en"
    eval_pattern: str = "dev.en"
    # Keep only the first N pairs of each split (0 keeps all): for smoke runs.
    max_pairs: int = 0


@dataclasses.dataclass(frozen=True)
class VocabConfig:
    # Largest vocabulary per language, reserved tokens excluded (0: no limit).
    source_vocab_size: int = 0
    target_vocab_size: int = 0
    # Tokens seen fewer times than this in the training split map to <unk>.
    min_frequency: int = 2
    # Token limits; the target side gets <s> and </s> on top.
    max_source_length: int = 16
    max_target_length: int = 16


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    embedding_dim: int = 256
    units: int = 256
    # Attention over the encoder outputs: "none" (the seed design), "luong" or "bahdanau".
    attention: str = "luong"
    # Dropout rate on the embeddings and on the decoder output before the softmax;
    # active in training only.
    dropout: float = 0.2
    # Read the source both ways: two LSTMs of units/2, outputs and states concatenated.
    bidirectional: bool = True
    # Use the target embedding matrix as the output projection (needs embedding_dim ==
    # units).
    tie_embeddings: bool = False


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    # Smaller batches reached a lower dev loss per epoch here (128 → 64 → 32) at a
    # similar cost per sentence (README, Quality and training speed).
    batch_size: int = 32
    # Train on batches of similar-length sentences trimmed to their longest member
    # (models/length_buckets.py) rather than on fully padded ones. Off until it is
    # shown to pay: most bucketed batches are still 11-14 source ids wide (of 16), and
    # bench/train_speed.py measured no gain over 100 steps.
    bucket_by_length: bool = False
    # Hold the transformed training examples in memory after the first epoch (a few
    # hundred bytes each) instead of re-reading them every epoch; turn off for a corpus
    # that does not fit in the Trainer's memory.
    cache_examples: bool = True
    # Examples the training shuffle draws from; at least the corpus size shuffles all.
    shuffle_buffer_size: int = 50_000
    epochs: int = 10
    learning_rate: float = 2e-3
    # "constant", or "cosine": each epoch's rate follows half a cosine from
    # learning_rate at the first epoch towards zero after the last.
    learning_rate_schedule: str = "cosine"
    # Probability mass spread uniformly over the vocabulary in the training target.
    label_smoothing: float = 0.1
    # Gradients are rescaled to at most this global norm (0: no clipping).
    clipnorm: float = 5.0
    # Stop after this many epochs without a lower dev loss and keep the weights of the
    # best epoch (0 trains every epoch and keeps the last).
    early_stopping_patience: int = 2
    # Seeds weight initialisation and dropout. Reruns come close but are not always
    # bit-identical on this CPU (README, Quality and training speed).
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class DecodingConfig:
    # Longest translation the serving graph emits, in decoder steps with </s> included
    # (0 emits nothing).
    max_output_length: int = 18
    # Each sentence is further capped at floor(max_length_ratio * source tokens +
    # max_length_offset) steps, so a confused model cannot ramble on after a short input.
    # Japanese outputs here run about 1.0–1.5× the English token count; ratio 0 turns
    # the relative cap off.
    max_length_ratio: float = 2.0
    max_length_offset: int = 4
    # Hypotheses kept per sentence by serving_default's beam search (1 is greedy
    # decoding); the `translate_with_options` signature takes any width per request.
    beam_width: int = 4
    # GNMT's alpha: finished hypotheses are ranked by log-probability divided by
    # ((5 + length) / 6) ** alpha; 0 ranks by raw log-probability (favours short outputs).
    length_penalty: float = 0.6


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    # A model is blessed only with dev BLEU (sacreBLEU, 0–100) at least this high …
    bleu_floor: float = 10.0
    # … and at most this many BLEU points below the latest blessed model.
    regression_tolerance: float = 0.0


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    model_name: str = "enja"
    # Replayed by TF Serving before it serves a new version (assets.extra).
    warmup_sentences: tuple[str, ...] = ("i like cats .", "where is the station ?",
                                         "he gave me a book yesterday .")


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
    # In-memory DirectRunner: worker processes would each pay the ~15 s TF import.
    beam_pipeline_args: tuple[str, ...] = (
        "--direct_running_mode=in_memory",
        "--direct_num_workers=1",
    )

    def transform_config(self) -> dict[str, Any]:
        """What Transform's preprocessing_fn reads (its `custom_config`)."""
        return {"vocab": dataclasses.asdict(self.vocab)}

    def trainer_config(self) -> dict[str, Any]:
        """What the Trainer's run_fn reads (its `custom_config`)."""
        return {
            "model": dataclasses.asdict(self.model),
            "training": dataclasses.asdict(self.training),
            "decoding": dataclasses.asdict(self.decoding),
            "serving": dataclasses.asdict(self.serving),
        }


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
    # A few hundred pairs and a tiny model: what the end-to-end test runs.
    "smoke": replace(
        PipelineConfig(),
        data={"max_pairs": 300},
        model={"embedding_dim": 16, "units": 32, "dropout": 0.0},
        training={"batch_size": 32, "epochs": 10, "learning_rate": 1e-2,
                  "early_stopping_patience": 0},
        evaluation={"bleu_floor": 0.01},
    ),
    # The default model, its learning rate decayed over 4 epochs instead of 10, at batch
    # 64 (batch 32 scored higher but took 24 minutes instead of 19).
    "quick": replace(PipelineConfig(), training={"epochs": 4, "batch_size": 64}),
    # A useful translator in about an hour on 2 CPU cores (63 min of pipeline measured here).
    "default": PipelineConfig(),
    # The seed article's model, the baseline users read about: no attention, 1024-unit
    # LSTMs, no dropout, 20 epochs, greedy decoding. Not yet run on this machine.
    "seed": replace(
        PipelineConfig(),
        model={"units": 1024, "attention": "none", "dropout": 0.0, "bidirectional": False},
        training={"epochs": 20, "early_stopping_patience": 0,
                  "learning_rate_schedule": "constant", "label_smoothing": 0.0},
        decoding={"beam_width": 1},
    ),
}
DEFAULT_PRESET = "default"
