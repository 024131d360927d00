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
    # The default model decodes with width 4 (DecodingConfig.beam_width); decoding time and memory grow with the
    # width (every step runs the decoder on width hypotheses per sentence), and 2**31 - 1 held 9 GB for 70 s.
    # 16 leaves room to trade speed for quality without letting one request tie up the server.
    max_beam_width: int = 16
