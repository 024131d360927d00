"""BLEU scores for tokenized Japanese output: sacreBLEU's corpus BLEU and the seed article's metric.

References are pre-tokenized (space-separated), so sacreBLEU must not tokenize again:
every scorer here is built by `scorer()` with `tokenize='none'`.
"""
from __future__ import annotations

import statistics
import warnings
from collections.abc import Sequence

from nltk.translate import bleu_score
from sacrebleu.metrics import BLEU


def scorer(effective_order: bool = False) -> BLEU:
    """The BLEU configuration (sacreBLEU defaults, no tokenization) shared by all our BLEU code.

    Effective order only changes how a score is computed from n-gram statistics; code that
    collects statistics with sentence scores sets it to avoid sacreBLEU's per-sentence warning.
    """
    return BLEU(tokenize="none", effective_order=effective_order)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacreBLEU corpus BLEU on a 0–100 scale, one reference per hypothesis."""
    return scorer().corpus_score(list(hypotheses), [list(references)]).score


def seed_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean unsmoothed NLTK sentence BLEU over characters, on a 0–1 scale.

    This reproduces the seed article's metric so our numbers compare with its published 0.38:
    it passes the token strings themselves to NLTK, which then counts character n-grams
    (spaces included). A sentence missing matches of some n-gram order scores 0 (or NLTK's
    floor of about 1e-231 when it has unigram matches) and still counts in the mean; NLTK
    warns about each of them, which we silence.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*The hypothesis contains 0 counts",
                                category=UserWarning)
        return statistics.fmean(
            bleu_score.sentence_bleu([reference], hypothesis)
            for hypothesis, reference in zip(hypotheses, references, strict=True)
        )
