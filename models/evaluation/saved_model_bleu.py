"""`enja evaluate`: translate a source file with an exported SavedModel and score it with BLEU.

Only the SavedModel's serving signature is used, so any exported model can be scored
without the project's model code.
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from enja.models.evaluation import bleu
from enja.serving import contract


class EvaluationError(ValueError):
    """The files or the model given cannot be evaluated; the message names which and why."""


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as lines:
            return [line.rstrip("\n") for line in lines]
    except OSError as error:
        raise EvaluationError(f"cannot read {path}: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise EvaluationError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from error


def _load(model_dir: str, signature_name: str) -> Any:
    """The SavedModel, checked to have the signature."""
    try:
        model = tf.saved_model.load(model_dir)
    except OSError as error:  # no saved_model.pb: TensorFlow's message names the folder
        raise EvaluationError(str(error)) from error
    if signature_name not in model.signatures:
        raise EvaluationError(f"{model_dir} has no {signature_name} signature (exported before it existed?)")
    return model


def translate(signature: Callable[..., dict[str, tf.Tensor]], sentences: Sequence[str],
              batch_size: int) -> list[str]:
    """Translates `sentences` through a serving signature, `batch_size` at a time."""
    translations: list[str] = []
    for start in range(0, len(sentences), batch_size):
        batch = tf.constant(sentences[start : start + batch_size], dtype=tf.string)
        outputs = signature(**{contract.TEXT_INPUT: batch})
        translations.extend(text.decode("utf-8") for text in outputs[contract.TRANSLATIONS_OUTPUT].numpy())
    return translations


def evaluate_saved_model(model_dir: str, src_file: str, ref_file: str, batch_size: int = 64,
                         beam_width: int | None = None) -> dict:
    """Scores the model's translations of `src_file` against `ref_file` (one sentence a line).

    `beam_width` None decodes as serving_default does; a width goes through the
    `translate_with_options` signature, to compare widths on one exported model.
    Returns corpus BLEU (sacreBLEU, 0–100), the seed article's BLEU (0–1), the number of
    sentences and the translation wall time in seconds (model loading excluded).
    """
    sources = _read_lines(src_file)
    references = _read_lines(ref_file)
    if len(sources) != len(references):
        raise EvaluationError(
            f"Source and reference files differ in length: {src_file} has {len(sources)} lines, "
            f"{ref_file} has {len(references)}."
        )
    if not sources:
        raise EvaluationError(f"{src_file} has no sentences to translate.")
    name = contract.SERVING_SIGNATURE if beam_width is None else contract.OPTIONS_SIGNATURE
    model = _load(model_dir, name)  # Keep a reference: the signature uses the model's resources.
    signature = model.signatures[name]
    if beam_width is not None:
        signature = functools.partial(signature, **{contract.BEAM_WIDTH_INPUT: tf.constant(beam_width,
                                                                                           tf.int32)})
    start = time.perf_counter()
    hypotheses = translate(signature, sources, batch_size)
    seconds = time.perf_counter() - start
    return {
        "bleu": bleu.corpus_bleu(hypotheses, references),
        "seed_bleu": bleu.seed_bleu(hypotheses, references),
        "sentences": len(sources),
        "seconds": seconds,
    }
