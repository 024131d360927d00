"""Settings of the vocabularies and sequence lengths (Transform's group).

Each preset's values live in `enja.pipeline.configs`; the group is defined here so that
the preprocessing_fn can import it without the pipeline's wiring.
"""
from __future__ import annotations

import dataclasses


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
