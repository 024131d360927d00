"""Settings of the model, its training and its decoding (the Trainer's groups).

Each preset's values live in `enja.pipeline.configs`; the group is defined here so that
the Trainer, the export and the benchmarks can import it without the pipeline's wiring.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

ATTENTIONS = ("none", "luong", "bahdanau")
LEARNING_RATE_SCHEDULES = ("constant", "cosine")


def _check_choice(setting: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{setting} is {value!r}; choose one of {', '.join(choices)}")


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

    def __post_init__(self) -> None:
        """A bad setting fails when the config is made, before any component runs."""
        _check_choice("model.attention", self.attention, ATTENTIONS)
        if self.bidirectional and self.units % 2:
            raise ValueError(f"model.bidirectional needs even model.units, not {self.units}")
        if self.tie_embeddings and self.embedding_dim != self.units:
            raise ValueError("model.tie_embeddings needs model.embedding_dim == model.units, not "
                             f"{self.embedding_dim} and {self.units}")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    # Smaller batches reached a lower dev loss per epoch here (128 → 64 → 32) at a
    # similar cost per sentence (README, Quality and training speed).
    # The global batch: trained on several replicas (GPUs or workers, models/
    # distribution.py), each takes an equal share of it (shares differ by one example
    # where it does not divide) and the loss stays the mean over all of it, so
    # learning_rate and the other settings mean what they mean on one device, unscaled.
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
    # Start from the latest blessed model's weights (token by token for the embeddings
    # and the output layer, models/warm_start.py) when it was built with the same model
    # settings (dropout aside); otherwise, or when off, train from scratch.
    warm_start: bool = True
    # Epochs of a warm-started run, over which its learning rate decays (0: `epochs`).
    warm_start_epochs: int = 0
    # Learning rate a warm-started run starts from (0: `learning_rate`); the optimizer
    # starts afresh, so a full rate may first undo some of what the base model learned.
    warm_start_learning_rate: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("training.learning_rate_schedule", self.learning_rate_schedule, LEARNING_RATE_SCHEDULES)


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
