"""Settings of the corpus ExampleGen (the data group).

Each preset's values live in `enja.pipeline.configs`; the group is defined here so that
the components can import it without the pipeline's wiring.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DataConfig:
    # Source-side (English) file patterns relative to the data root; the Japanese file
    # is the same name with the language code swapped. `train.en.{SPAN:3}` reads the
    # zero-padded span files (train.en.000 …) as TFX spans, the latest by default.
    train_pattern: str = "train.en"
    eval_pattern: str = "dev.en"
    # Keep only the first N pairs of each split (0 keeps all): for smoke runs.
    max_pairs: int = 0
