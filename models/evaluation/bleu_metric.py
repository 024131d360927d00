"""A TFMA metric for sacreBLEU corpus BLEU that Evaluator thresholds can gate on.

TFMA 0.47's own `Bleu` cannot be thresholded: it misreads the bytes arrays of shape (1,)
it is fed and outputs a `BLEUScore` object rather than a number. `CorpusBleu` outputs a
float equal to `enja.models.evaluation.bleu.corpus_bleu` over the evaluated examples. Its accumulator
holds sacreBLEU's sufficient statistics, so partial results from Beam workers merge by
addition. Reference it from an EvalConfig as
`tfma.MetricConfig(class_name="CorpusBleu", module="enja.models.evaluation.bleu_metric")`.
"""
from __future__ import annotations

from collections.abc import Iterable

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from sacrebleu.metrics import BLEU
from tensorflow_model_analysis.metrics import metric_types, metric_util

from enja.models.evaluation import bleu

BLEU_NAME = "bleu"


def _texts(values: np.ndarray) -> list[str]:
    """Decodes a label or prediction (bytes, scalar or shaped [1]) into strings."""
    return [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in np.ravel(values)]


class _CorpusBleuCombiner(beam.CombineFn):
    """Sums sacreBLEU statistics per example and scores the sum.

    The accumulator is an int array laid out like sacreBLEU's segment statistics:
    [hypothesis length, reference length, matching n-grams for n = 1..N, total n-grams for n = 1..N].
    """

    def __init__(
        self,
        key: metric_types.MetricKey,
        eval_config: tfma.EvalConfig | None,
        model_name: str,
        output_name: str,
    ) -> None:
        self._key = key
        self._eval_config = eval_config
        self._model_name = model_name
        self._output_name = output_name
        self._corpus = bleu.scorer()
        self._sentence = bleu.scorer(effective_order=True)

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(2 + 2 * self._corpus.max_ngram_order, dtype=np.int64)

    def add_input(self, accumulator: np.ndarray, element: metric_types.StandardMetricInputs) -> np.ndarray:
        labels, predictions, _ = next(
            metric_util.to_label_prediction_example_weight(
                element,
                eval_config=self._eval_config,
                model_name=self._model_name,
                output_name=self._output_name,
                flatten=False,
                squeeze=False,
            )
        )
        (hypothesis,) = _texts(predictions)
        score = self._sentence.sentence_score(hypothesis, _texts(labels))
        return accumulator + np.array([score.sys_len, score.ref_len, *score.counts, *score.totals])

    def merge_accumulators(self, accumulators: Iterable[np.ndarray]) -> np.ndarray:
        return np.sum(list(accumulators), axis=0)

    def extract_output(self, accumulator: np.ndarray) -> dict[metric_types.MetricKey, float]:
        sys_len, ref_len, *ngrams = accumulator.tolist()
        order = self._corpus.max_ngram_order
        score = BLEU.compute_bleu(
            correct=ngrams[:order],
            total=ngrams[order:],
            sys_len=sys_len,
            ref_len=ref_len,
            smooth_method=self._corpus.smooth_method,
            smooth_value=self._corpus.smooth_value,
            effective_order=self._corpus.effective_order,
            max_ngram_order=order,
        )
        return {self._key: float(score.score)}


def _corpus_bleu(
    name: str,
    eval_config: tfma.EvalConfig | None,
    model_name: str,
    output_name: str,
    example_weighted: bool,
) -> metric_types.MetricComputations:
    """One computation per model and output, keyed the way TFMA keys thresholds."""
    key = metric_types.MetricKey(
        name=name, model_name=model_name, output_name=output_name, example_weighted=example_weighted
    )
    return [
        metric_types.MetricComputation(
            keys=[key],
            preprocessors=None,
            combiner=_CorpusBleuCombiner(key, eval_config, model_name, output_name),
        )
    ]


class CorpusBleu(metric_types.Metric):
    """sacreBLEU corpus BLEU (0–100, no tokenization) of the predicted translations against the labels.

    Labels are the reference translations; example weights are ignored, since corpus BLEU
    is not an average over examples.
    """

    def __init__(self, name: str = BLEU_NAME) -> None:
        super().__init__(metric_util.merge_per_key_computations(_corpus_bleu), name=name)
