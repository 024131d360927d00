"""Settings of the corpus and its checks (the data group: ExampleGen and DataGate).

Each preset's values live in `enja.pipeline.configs`; the group is defined here so that
the components can import it without the pipeline's wiring.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DataConfig:
    # Source-side (English) file patterns relative to the data root; the Japanese file
    # is the same name with the language code swapped. `train.en.{SPAN:3}` names the
    # zero-padded span files (train.en.000 …): data arriving over time.
    train_pattern: str = "train.en.{SPAN:3}"
    eval_pattern: str = "dev.en"
    # The training spans a run reads, ending at the latest: 1 reads the latest span alone,
    # N the latest N, 0 every span up to the latest.
    window_spans: int = 0
    # The last span of the window: -1 is the latest span on disk; a number replays the
    # window that ended there.
    end_span: int = -1
    # Keep only the first N pairs of each file (0 keeps all): for smoke runs.
    max_pairs: int = 0
    # The data gate stops a run when a file has a larger share of empty lines than this
    # (ExampleGen drops pairs with an empty side, so the schema never sees them).
    max_empty_fraction: float = 0.01
