"""`model.architecture` → the module that builds it."""
from __future__ import annotations

from enja.models.architectures import lstm, seq2seq, transformer
from enja.models.config import ModelConfig

_BUILDERS = {"lstm": lstm.build, "transformer": transformer.build}


def build(config: ModelConfig, source_vocab_size: int, target_vocab_size: int
          ) -> seq2seq.EncoderDecoder:
    """The configured encoder–decoder for these vocabulary sizes (reserved ids included)."""
    return _BUILDERS[config.architecture](config, source_vocab_size, target_vocab_size)
