"""Settings of the model and its training (the Trainer's groups) and of its decoding
(ServingExport's).

Each preset's values live in `enja.pipeline.configs`; the group is defined here so that
the Trainer, the export and the benchmarks can import it without the pipeline's wiring.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

ARCHITECTURES = ("lstm", "transformer")
ATTENTIONS = ("none", "luong", "bahdanau")
LEARNING_RATE_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("float32", "mixed_bfloat16")
# Per architecture, the model settings that shape none of its weights: dropout acts in
# training only, and the rest belong to the other architecture. Changing them keeps a
# warm start (models/training/warm_start.py).
WEIGHT_NEUTRAL_SETTINGS = {
    "lstm": frozenset({"dropout", "layers", "heads", "feedforward_dim",
                       "project_inputs_once", "fused_qkv"}),
    "transformer": frozenset({"dropout", "embedding_dim", "attention", "bidirectional",
                              "project_inputs_once", "fused_qkv"}),
}


def _check_choice(setting: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{setting} is {value!r}; choose one of {', '.join(choices)}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    # "lstm" (models/architectures/lstm.py) or "transformer" (models/architectures/transformer.py).
    architecture: str = "lstm"
    # LSTM only: the Transformer's embeddings have its width, `units`.
    embedding_dim: int = 256
    # The LSTMs' width; the Transformer's model width.
    units: int = 256
    # LSTM: attention over the encoder outputs: "none" (the seed design), "luong" or
    # "bahdanau".
    attention: str = "luong"
    # Dropout rate, active in training only. LSTM: on the embeddings and on the decoder
    # output before the softmax; Transformer: on the embeddings, every sublayer's output,
    # the attention weights and the feed-forward hidden layer.
    dropout: float = 0.2
    # LSTM: read the source both ways: two LSTMs of units/2, outputs and states
    # concatenated.
    bidirectional: bool = True
    # Transformer: blocks in the encoder and in the decoder, attention heads (units must
    # divide by them), and the feed-forward hidden width.
    layers: int = 3
    heads: int = 4
    feedforward_dim: int = 1024
    # Use the target embedding matrix as the output projection (an LSTM needs
    # embedding_dim == units).
    tie_embeddings: bool = False
    # LSTM only: multiply the inputs of all time steps by the input kernel in one matmul
    # before the recurrence (lstm.ProjectedLSTM) rather than step by step as
    # keras.layers.LSTM does without cuDNN. Same weights and math.
    project_inputs_once: bool = False
    # Transformer only: self-attention's query, key and value projections as one matmul
    # of their three kernels side by side (transformer.Attention.self_attend). Same
    # weights and math.
    fused_qkv: bool = False

    def __post_init__(self) -> None:
        """A bad setting fails when the config is made, before any component runs."""
        _check_choice("model.architecture", self.architecture, ARCHITECTURES)
        _check_choice("model.attention", self.attention, ATTENTIONS)
        if self.architecture == "transformer":
            if self.heads < 1 or self.units % (2 * self.heads):
                raise ValueError(f"model.units ({self.units}) must divide into model.heads "
                                 f"({self.heads}) heads of even width")
            return
        if self.bidirectional and self.units % 2:
            raise ValueError(f"model.bidirectional needs even model.units, not {self.units}")
        if self.tie_embeddings and self.embedding_dim != self.units:
            raise ValueError("model.tie_embeddings needs model.embedding_dim == model.units, not "
                             f"{self.embedding_dim} and {self.units}")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    # The global batch: trained on several replicas (GPUs or workers, models/training/
    # distribution.py), each takes an equal share of it (shares differ by one example
    # where it does not divide) and the loss stays the mean over all of it, so
    # learning_rate and the other settings mean what they mean on one device, unscaled.
    batch_size: int = 32
    # Train on batches of similar-length sentences trimmed to their longest member
    # (models/training/length_buckets.py) rather than on fully padded ones. Off: this corpus's
    # sentences are short and alike, so most batches stay nearly full-width and little is saved
    # (docs/quality.md).
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
    # Adam's second-moment decay; Transformers commonly train with 0.98.
    adam_beta_2: float = 0.999
    # The learning rate rises linearly from 0 over this many first steps (0: no warm-up).
    warmup_steps: int = 0
    # Momentum of an exponential moving average of the weights (Polyak averaging, e.g.
    # 0.999), which validation, early stopping and the export then use (0: off).
    weight_averaging: float = 0.0
    # "float32", or "mixed_bfloat16": bfloat16 computations on float32 weights.
    precision: str = "float32"
    # Compile the training step with XLA (Keras's jit_compile; its "auto" leaves XLA off
    # on a machine without a GPU). Same math, fused into fewer kernels. Only on one
    # device: under a tf.distribute strategy it stays off, as Keras's "auto" has it.
    jit_compile: bool = False
    # Stop after this many epochs without a lower dev loss and keep the weights of the
    # best epoch (0 trains every epoch and keeps the last).
    early_stopping_patience: int = 2
    # Seeds weight initialisation and dropout. Reruns come close but are not always
    # bit-identical: multi-threaded CPU kernels may sum in another order.
    seed: int = 0
    # Start from the weights of the model in production (token by token for the embeddings
    # and the output layer, models/training/warm_start.py) when it was built with the same model
    # settings (dropout aside); otherwise, or when off, train from scratch.
    warm_start: bool = True
    # Epochs of a warm-started run, over which its learning rate decays (0: `epochs`).
    warm_start_epochs: int = 0
    # Learning rate a warm-started run starts from (0: `learning_rate`); the optimizer
    # starts afresh, so a full rate may first undo some of what the base model learned.
    warm_start_learning_rate: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("training.learning_rate_schedule", self.learning_rate_schedule, LEARNING_RATE_SCHEDULES)
        _check_choice("training.precision", self.precision, PRECISIONS)
        if not 0.0 <= self.weight_averaging < 1.0:
            raise ValueError("training.weight_averaging is a momentum in [0, 1), not "
                             f"{self.weight_averaging}")


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
    # 1.0 scored 0.2–0.4 dev BLEU above 0.6 for both architectures (bench/decoding.py).
    length_penalty: float = 1.0
