"""`enja attention`: a heatmap of where the decoder looks in the source for each output token.

It uses only the exported SavedModel's `attention` signature, so any exported model
can be inspected without the project's model code. Japanese labels need a font with
CJK glyphs; without one, target tokens are labelled by vocabulary id and the returned
note maps ids to tokens.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import BinaryIO, NamedTuple

import numpy as np
import tensorflow as tf
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font

from enja.preprocessing import features
from enja.serving import contract


class Alignment(NamedTuple):
    source_tokens: list[str]
    target_tokens: list[str]  # </s> included
    target_ids: list[int]
    weights: np.ndarray  # [target, source]


def align(model_dir: str, sentence: str) -> Alignment:
    """Translates `sentence` greedily and returns its attention, padding trimmed off."""
    model = tf.saved_model.load(model_dir)  # Keep a reference: the signature uses its resources.
    outputs = model.signatures[contract.ATTENTION_SIGNATURE](
        **{contract.TEXT_INPUT: tf.constant([sentence])})
    source = [token.decode() for token in outputs[contract.SOURCE_TOKENS_OUTPUT].numpy()[0]]
    ids = outputs[contract.TARGET_IDS_OUTPUT].numpy()[0]
    target = [token.decode() for token in outputs[contract.TARGET_TOKENS_OUTPUT].numpy()[0]]
    rows = np.flatnonzero(ids != features.PAD_ID)
    columns = [i for i, token in enumerate(source) if token]
    if not len(rows) or not columns:
        raise ValueError(f"Nothing to plot: {sentence!r} has no tokens or no translation.")
    weights = outputs[contract.ATTENTION_OUTPUT].numpy()[0][np.ix_(rows, columns)]
    return Alignment([source[i] for i in columns], [target[i] for i in rows],
                     [int(ids[i]) for i in rows], weights)


@functools.cache
def _codepoints(font_file: str) -> frozenset[int]:
    try:
        return frozenset(FT2Font(font_file).get_charmap())
    except (OSError, RuntimeError):  # a font FreeType cannot read covers nothing
        return frozenset()


def _font_covering(labels: Iterable[str]) -> str | None:
    """A font file with glyphs for every character of `labels`, the default font first.

    The installed fonts are listed afresh (not only from matplotlib's cache), so a font
    installed after the cache was built is found."""
    needed = {ord(char) for label in labels for char in label}
    default = font_manager.findfont(font_manager.FontProperties())
    cached = {font.fname for font in font_manager.fontManager.ttflist}
    candidates = [default, *sorted(cached | set(font_manager.findSystemFonts()))]
    return next((path for path in candidates if needed <= _codepoints(path)), None)


def _labels(alignment: Alignment) -> tuple[list[str], list[str], str, str | None]:
    """Tick labels and the font to draw them with, falling back to ids for target tokens
    the default font cannot draw; returns a note saying so (None when all are drawn)."""
    font = _font_covering(alignment.source_tokens + alignment.target_tokens)
    if font is not None:
        return alignment.source_tokens, alignment.target_tokens, font, None
    font = font_manager.findfont(font_manager.FontProperties())
    drawable = _codepoints(font)
    source = [token if {ord(c) for c in token} <= drawable else ascii(token)
              for token in alignment.source_tokens]
    target, replaced = [], {}
    for token, token_id in zip(alignment.target_tokens, alignment.target_ids, strict=True):
        if {ord(c) for c in token} <= drawable:
            target.append(token)
        else:
            target.append(f"#{token_id}")
            replaced[f"#{token_id}"] = token
    note = ("No installed font has glyphs for these target tokens, so they are labelled by "
            "vocabulary id: " + ", ".join(f"{label}={token}" for label, token in replaced.items()))
    return source, target, font, note


def draw(alignment: Alignment, output_png: str | BinaryIO) -> str | None:
    """Saves the heatmap (source on x, target on y) as a PNG file, or into a binary stream for
    pages that embed it; returns the label note, if any."""
    source, target, font_file, note = _labels(alignment)
    font = font_manager.FontProperties(fname=font_file)
    figure = Figure(figsize=(1.5 + 0.45 * len(source), 1.2 + 0.4 * len(target)), dpi=100)
    FigureCanvasAgg(figure)  # the Agg canvas: no display, no global pyplot state
    axes = figure.add_subplot()
    image = axes.imshow(alignment.weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(source)), source, rotation=90, fontproperties=font)
    axes.set_yticks(range(len(target)), target, fontproperties=font)
    axes.set_xlabel("source (English)")
    axes.set_ylabel("translation (Japanese)")
    figure.colorbar(image, ax=axes, label="attention weight")
    figure.savefig(output_png, format="png", bbox_inches="tight")
    return note


def plot_attention(model_dir: str, sentence: str, output_png: str) -> str | None:
    """Translates `sentence` with the SavedModel and saves its attention heatmap to `output_png`.

    Returns a note when target tokens had to be labelled by id (no CJK font installed).
    """
    return draw(align(model_dir, sentence), output_png)
