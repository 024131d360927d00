"""BLEU scores and the CorpusBleu TFMA metric, run through a real TFMA evaluation."""
from __future__ import annotations

import math
import pathlib

import apache_beam as beam
import numpy as np
import pytest
import sacrebleu
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types

from enja.models.evaluation import bleu, bleu_metric
from enja.preprocessing import features
from enja.serving import contract

# English sources, Japanese references, and what the stand-in models answer.
SOURCES = [
    "i have a pen .",
    "he lived a hard life .",
    "show your own business .",
    "it 's raining today .",
    "where is the station ?",
]
REFERENCES = [
    "私 は ペン を 持 っ て い る 。",
    "彼 は つら い 人生 を 送 っ た 。",
    "自分 の 事 を しろ 。",
    "今日 は 雨 が 降 っ て い る 。",
    "駅 は どこ で す か 。",
]
GOOD = [
    "私 は ペン を 持 っ て い る 。",
    "彼 は 難し い 人生 を 送 っ た 。",
    "自分 の こと を しろ 。",
    "今日 は 雨 で す 。",
    "駅 は どこ で す か 。",
]
POOR = [
    "私 は ペン 。",
    "彼 は 人生 。",
    "事 を しろ 。",
    "雨 で す 。",
    "どこ で す か 。",
]


def _sacrebleu(hypotheses: list[str], references: list[str]) -> float:
    return sacrebleu.corpus_bleu(hypotheses, [references], tokenize="none").score


def test_corpus_bleu_is_sacrebleu_without_tokenization() -> None:
    score = bleu.corpus_bleu(GOOD, REFERENCES)
    assert score == _sacrebleu(GOOD, REFERENCES)
    assert 0 < score < 100
    assert bleu.corpus_bleu(REFERENCES, REFERENCES) == pytest.approx(100.0)


def test_seed_bleu_identical_and_disjoint() -> None:
    assert bleu.seed_bleu(REFERENCES, REFERENCES) == pytest.approx(1.0)
    assert bleu.seed_bleu(["あいう", "えお"], ["かきく", "けこ"]) == 0.0
    # NLTK sees characters, so the spaces of disjoint token strings match as unigrams; a sentence
    # without higher-order matches then scores about 1e-231 rather than exactly 0.
    assert bleu.seed_bleu(["あ い う え お"], ["か き く け こ"]) == pytest.approx(0.0, abs=1e-200)


def test_seed_bleu_is_a_hand_checked_mean() -> None:
    # Characters of "abcdx" vs "abcde": 4/5 unigrams, 3/4 bigrams, 2/3 trigrams and 1/2
    # 4-grams match at equal length, so BLEU = (4/5 * 3/4 * 2/3 * 1/2) ** (1/4) = 0.2 ** 0.25.
    # "abc" has no 4-gram, so unsmoothed BLEU scores it (about) 0 and it halves the mean.
    assert bleu.seed_bleu(["abcdx", "abc"], ["abcde", "abc"]) == pytest.approx(0.2**0.25 / 2)


def test_seed_bleu_penalises_brevity_and_clips_counts() -> None:
    # NLTK counts the characters of the token strings, spaces included. "猫 が 好き" (6 characters)
    # has every n-gram in "私 は 猫 が 好き で す" (14), so BLEU is the brevity penalty exp(1 - 14/6).
    assert bleu.seed_bleu(["猫 が 好き"], ["私 は 猫 が 好き で す"]) == pytest.approx(math.exp(1 - 14 / 6))
    # "猫 猫 が 好き" (8) against "猫 が 好き で す" (10): the reference's one 猫 matches once, so 7/8
    # unigrams, 5/7 bigrams, 4/6 trigrams and 3/5 4-grams match; their product is 1/4.
    assert bleu.seed_bleu(["猫 猫 が 好き"], ["猫 が 好き で す"]) == pytest.approx(
        math.exp(1 - 10 / 8) * (1 / 4) ** (1 / 4))


# --- The TFMA metric ---------------------------------------------------------------


def _inputs(hypothesis: str, reference: str,
            prediction_shape: tuple[int, ...]) -> metric_types.StandardMetricInputs:
    """One example as TFMA hands it to a combiner: label from the `ja` feature, shape (1,)."""
    return metric_types.StandardMetricInputs(
        labels=np.array([reference.encode()], dtype=object),
        predictions=np.array(hypothesis.encode(), dtype=object).reshape(prediction_shape),
        example_weights=np.array([1.0]),
    )


def _accumulate(
    combiner: beam.CombineFn, hypotheses: list[str], references: list[str], prediction_shape: tuple[int, ...]
) -> np.ndarray:
    accumulator = combiner.create_accumulator()
    for hypothesis, reference in zip(hypotheses, references, strict=True):
        accumulator = combiner.add_input(accumulator, _inputs(hypothesis, reference, prediction_shape))
    return accumulator


@pytest.mark.parametrize("prediction_shape", [(1,), ()])
def test_combiner_equals_sacrebleu_and_merges_split_inputs(prediction_shape: tuple[int, ...]) -> None:
    (computation,) = bleu_metric.CorpusBleu().computations()
    combiner = computation.combiner
    whole = combiner.extract_output(_accumulate(combiner, GOOD, REFERENCES, prediction_shape))
    assert whole == {metric_types.MetricKey(name="bleu"): _sacrebleu(GOOD, REFERENCES)}
    assert isinstance(whole[metric_types.MetricKey(name="bleu")], float)

    parts = [
        _accumulate(combiner, GOOD[:2], REFERENCES[:2], prediction_shape),
        combiner.create_accumulator(),
        _accumulate(combiner, GOOD[2:], REFERENCES[2:], prediction_shape),
    ]
    assert combiner.extract_output(combiner.merge_accumulators(parts)) == whole


# --- CorpusBleu in a real TFMA evaluation ------------------------------------------


class _StandIn(tf.Module):
    """A translator that looks each English sentence up in a fixed table."""

    def __init__(self, translations: list[str]):
        super().__init__()
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(SOURCES, translations), default_value=""
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def translate_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(examples, {features.SOURCE_KEY: tf.io.FixedLenFeature([], tf.string)})
        translations = self._table.lookup(parsed[features.SOURCE_KEY])
        return {
            contract.TRANSLATIONS_OUTPUT: tf.expand_dims(translations, 1),
            contract.SCORES_OUTPUT: tf.zeros_like(translations, dtype=tf.float32),
        }


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    paths = {}
    for name, translations in (("good", GOOD), ("poor", POOR)):
        path = str(tmp_path_factory.mktemp(name))
        module = _StandIn(translations)
        tf.saved_model.save(module, path, signatures={contract.EXAMPLES_SIGNATURE: module.translate_examples})
        paths[name] = path
    return paths


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("examples") / "examples.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for en, ja in zip(SOURCES, REFERENCES, strict=True):
            feature = {
                features.SOURCE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[en.encode()])),
                features.TARGET_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[ja.encode()])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return path


def _model_spec(name: str, is_baseline: bool = False) -> tfma.ModelSpec:
    return tfma.ModelSpec(
        name=name,
        signature_name=contract.EXAMPLES_SIGNATURE,
        label_key=features.TARGET_KEY,
        prediction_key=contract.TRANSLATIONS_OUTPUT,
        is_baseline=is_baseline,
    )


def _corpus_bleu_config(name: str, threshold: tfma.MetricThreshold) -> tfma.MetricConfig:
    """CorpusBleu referenced the way the pipeline's EvalConfig does: by module and class name."""
    return tfma.MetricConfig(
        class_name="CorpusBleu", module="enja.models.evaluation.bleu_metric", config=f'"name": "{name}"',
        threshold=threshold
    )


def _lower_bound(value: float) -> tfma.GenericValueThreshold:
    return tfma.GenericValueThreshold(lower_bound={"value": value})


def test_tfma_evaluation_computes_and_thresholds_bleu(
    models: dict[str, str], examples: str, tmp_path: pathlib.Path
) -> None:
    # One TFMA run (they are slow) of a candidate against a worse baseline, with BLEU under
    # two names: "bleu" must pass a low bound and a change threshold, "bleu_high_bar" must fail.
    eval_config = tfma.EvalConfig(
        model_specs=[_model_spec("candidate"), _model_spec("baseline", is_baseline=True)],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[
                    _corpus_bleu_config(
                        "bleu",
                        tfma.MetricThreshold(
                            value_threshold=_lower_bound(20.0),
                            change_threshold=tfma.GenericChangeThreshold(
                                direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": 10.0}
                            ),
                        ),
                    ),
                    _corpus_bleu_config("bleu_high_bar",
                                        tfma.MetricThreshold(value_threshold=_lower_bound(90.0))),
                ]
            )
        ],
        slicing_specs=[tfma.SlicingSpec()],
    )
    shared_models = [
        tfma.default_eval_shared_model(eval_saved_model_path=path, eval_config=eval_config, model_name=name)
        for name, path in (("candidate", models["good"]), ("baseline", models["poor"]))
    ]
    tfma.run_model_analysis(
        eval_shared_model=shared_models,
        eval_config=eval_config,
        data_location=examples,
        output_path=str(tmp_path),
        pipeline_options=beam.options.pipeline_options.PipelineOptions(
            ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
        ),
    )

    (metrics,) = tfma.load_metrics(str(tmp_path))
    bleu_values = {
        (entry.key.model_name, entry.key.is_diff): entry.value.double_value.value
        for entry in metrics.metric_keys_and_values
        if entry.key.name == bleu_metric.BLEU_NAME
    }
    good, poor = _sacrebleu(GOOD, REFERENCES), _sacrebleu(POOR, REFERENCES)
    assert 20.0 < good < 90.0 and good - poor > 10.0
    assert bleu_values == {
        ("candidate", False): pytest.approx(good, abs=1e-9),
        ("baseline", False): pytest.approx(poor, abs=1e-9),
        ("candidate", True): pytest.approx(good - poor, abs=1e-9),
    }

    validation = tfma.load_validation_result(str(tmp_path))
    assert not validation.validation_ok
    failed = {
        failure.metric_key.name for per_slice in validation.metric_validations_per_slice
        for failure in per_slice.failures
    }
    assert failed == {"bleu_high_bar"}
