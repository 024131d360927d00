"""Settings shared by ServingExport and the model server, and the server's request limits.

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


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """Largest request the server accepts: sentences per request, characters per string, beam width."""

    max_batch_size: int = 256
    max_chars: int = 1000
    # Decoding time and memory grow with the width (each step decodes width hypotheses a sentence): 16 leaves
    # room above the presets' widths (1 to 8) to trade speed for quality, without letting one request tie up
    # the server.
    max_beam_width: int = 16
