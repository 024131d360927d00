"""Settings shared by the Trainer's export and the model server.

Each preset's values live in `enja.pipeline.configs`; the group is defined here so that
the export and the server can import it without the pipeline's wiring.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    model_name: str = "enja"
    # Replayed by TF Serving before it serves a new version (assets.extra).
    warmup_sentences: tuple[str, ...] = ("i like cats .", "where is the station ?",
                                         "he gave me a book yesterday .")
