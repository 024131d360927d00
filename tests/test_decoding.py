"""In-graph decoding: beam search against greedy, length caps, attention, and their export."""
from __future__ import annotations

import warnings

import keras
import matplotlib
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from enja.models.architectures import decoding, registry, seq2seq
from enja.models.config import DecodingConfig, ModelConfig
from enja.models.evaluation import saved_model_bleu
from enja.models.export import translator
from enja.pipeline import cli
from enja.preprocessing import features
from enja.serving import contract
from support.corpus import TINY_PAIRS

SOURCE_VOCAB, TARGET_VOCAB = 12, 15
# Four sentences of 5, 3, 1 and 4 tokens, 0-padded.
SOURCE_LENGTHS = [5, 3, 1, 4]


UNTRAINED_CONFIGS = {
    "lstm": ModelConfig(embedding_dim=8, units=16),
    "transformer": ModelConfig(architecture="transformer", embedding_dim=16, units=16, layers=2,
                               heads=2, feedforward_dim=32),
}


@pytest.fixture(scope="module", params=sorted(UNTRAINED_CONFIGS))
def untrained(request) -> seq2seq.EncoderDecoder:
    """A random model: its near-uniform outputs make beam and greedy search disagree often.
    Each architecture's, so decoding is checked against both kinds of decoder state."""
    keras.utils.set_random_seed(1)
    return registry.build(UNTRAINED_CONFIGS[request.param], SOURCE_VOCAB, TARGET_VOCAB)


@pytest.fixture(scope="module")
def source_ids() -> tf.Tensor:
    rng = np.random.default_rng(0)
    ids = rng.integers(features.NUM_RESERVED, SOURCE_VOCAB, size=(len(SOURCE_LENGTHS), 5))
    for row, length in enumerate(SOURCE_LENGTHS):
        ids[row, length:] = features.PAD_ID
    return tf.constant(ids, tf.int64)


def _beam_and_greedy(model: seq2seq.EncoderDecoder, source_ids: tf.Tensor, width: int,
                     max_length: tf.Tensor, alpha: float) -> tuple[np.ndarray, ...]:
    """Both decoders traced into one tf.function, the beam width fed as a tensor."""
    @tf.function
    def decode(width: tf.Tensor):
        return (*decoding.beam_search_decode(model, source_ids, width, max_length, alpha),
                *decoding.greedy_decode(model, source_ids, max_length))

    return tuple(t.numpy() for t in decode(tf.constant(width)))


def test_width_one_is_exactly_greedy(untrained, source_ids):
    limits = decoding.output_length_limits(source_ids, 9, ratio=1.0, offset=2)
    beam_ids, beam_scores, greedy_ids, greedy_scores = _beam_and_greedy(
        untrained, source_ids, 1, limits, alpha=0.6)
    np.testing.assert_array_equal(beam_ids, greedy_ids)
    np.testing.assert_array_equal(beam_scores, greedy_scores)


@pytest.mark.parametrize("width", [2, 4])
def test_beam_scores_are_finite_log_probabilities(untrained, source_ids, width):
    beam_ids, beam_scores, _, _ = _beam_and_greedy(
        untrained, source_ids, width, tf.constant(8), alpha=0.0)
    assert np.all(np.isfinite(beam_scores)) and np.all(beam_scores <= 0)
    assert beam_ids.shape[0] == len(SOURCE_LENGTHS) and beam_ids.shape[1] <= 8


def test_a_beam_wide_enough_to_keep_everything_never_loses_to_greedy(untrained, source_ids):
    # A narrow beam may prune the greedy path; one holding every two-token hypothesis
    # finds the best of them, greedy's included.
    _, beam_scores, _, greedy_scores = _beam_and_greedy(
        untrained, source_ids, TARGET_VOCAB ** 2, tf.constant(2), alpha=0.0)
    assert np.all(beam_scores >= greedy_scores - 1e-5), (beam_scores, greedy_scores)


def test_decoding_passes_no_keras_mask_to_the_decoder_step(untrained, source_ids):
    # The source mask is an explicit input; a Keras mask riding on the encoder outputs
    # would make Keras warn, at every trace, that the decoder step drops it.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoding.greedy_decode(untrained, source_ids, 3)
        decoding.beam_search_decode(untrained, source_ids, 2, 3, 0.6)
    assert not [w for w in caught if "mask" in str(w.message)], [str(w.message) for w in caught]


def test_length_penalty_is_gnmts():
    np.testing.assert_allclose(decoding.length_penalty(tf.constant([1, 7]), 1.0), [1.0, 2.0])
    np.testing.assert_allclose(decoding.length_penalty(tf.constant([1, 7]), 0.0), [1.0, 1.0])


A, B = features.NUM_RESERVED, features.NUM_RESERVED + 1  # the two tokens of ChainModel's vocabulary
# ChainModel's next-token probabilities after each token: <s> → </s> 0.4, A 0.6; A → </s> 0.62,
# B 0.38; B → </s>. So [</s>] has log-probability ln 0.4 = -0.92, [A </s>] ln 0.6 + ln 0.62 = -0.99:
# lower, yet above it once divided by GNMT's penalty for its 2 steps, (7/6) ** alpha at alpha 1.
CHAIN = {features.START_ID: {features.END_ID: 0.4, A: 0.6}, A: {features.END_ID: 0.62, B: 0.38},
         B: {features.END_ID: 1.0}}


class ChainModel(seq2seq.EncoderDecoder):
    """A decoder whose next token depends only on the last one, with CHAIN's probabilities: which
    finished hypothesis beam search picks is known by hand."""

    def __init__(self):  # no Keras model: `encode` and `step` are all decoding calls
        logits = np.full((B + 1, B + 1), -30.0, np.float32)
        for token, following in CHAIN.items():
            for next_token, probability in following.items():
                logits[token, next_token] = np.log(probability)
        self._logits = tf.constant(logits)

    @property
    def target_vocab_size(self) -> int:
        return B + 1

    def encode(self, source_ids):
        return tf.cast(source_ids, tf.float32), tf.zeros([tf.shape(source_ids)[0], 1], tf.int64)

    def step(self, token, state, memory):
        return tf.gather(self._logits, token[:, 0]), token, tf.zeros_like(memory)


@pytest.mark.parametrize(("alpha", "best", "log_probability"), [
    (0.0, [features.END_ID], np.log(0.4)),
    (1.0, [A, features.END_ID], np.log(0.6 * 0.62)),
    (2.0, [A, features.END_ID], np.log(0.6 * 0.62)),
])
def test_the_length_penalty_decides_which_finished_hypothesis_wins(alpha, best, log_probability):
    """Without the penalty the shorter hypothesis wins on log-probability; with GNMT's the longer one."""
    ids, scores = decoding.beam_search_decode(ChainModel(), tf.constant([[A]], tf.int64), 2, 5, alpha)
    assert [i for i in ids.numpy()[0].tolist() if i != features.PAD_ID] == best
    np.testing.assert_allclose(scores.numpy(), [log_probability], rtol=1e-5)


def test_relative_cap_limits_each_sentence(untrained, source_ids):
    limits = decoding.output_length_limits(source_ids, 6, ratio=1.5, offset=1).numpy()
    np.testing.assert_array_equal(limits, [6, 5, 2, 6])  # min(6, floor(1.5 * n + 1))
    assert decoding.output_length_limits(source_ids, 6, ratio=0.0, offset=1).numpy().tolist() \
        == [6] * 4
    for ids, _ in (decoding.greedy_decode(untrained, source_ids, limits),
                   decoding.beam_search_decode(untrained, source_ids, 3, limits, 0.6)):
        emitted = np.sum(ids.numpy() != features.PAD_ID, axis=1)
        assert np.all(emitted <= limits) and np.all(emitted >= 1)
    for decoded in (decoding.greedy_decode(untrained, source_ids, 0),
                    decoding.beam_search_decode(untrained, source_ids, 3, 0, 0.6)):
        assert decoded[0].shape[1] == 0 and np.all(decoded[1].numpy() == 0)


def test_attention_weighs_only_real_source_positions(untrained, source_ids):
    ids, _, weights = decoding.greedy_decode_with_attention(untrained, source_ids, 6)
    ids, weights = ids.numpy(), weights.numpy()
    assert weights.shape == (*ids.shape, source_ids.shape[1])
    emitted = ids != features.PAD_ID
    np.testing.assert_allclose(weights.sum(-1)[emitted], 1.0, rtol=1e-5)
    assert np.all(weights[~emitted] == 0)
    padding = np.broadcast_to((source_ids.numpy() == features.PAD_ID)[:, None], weights.shape)
    assert np.all(weights[padding] == 0)


@pytest.fixture(scope="module")
def export_dir(tiny_model, transform_output_dir, tmp_path_factory) -> str:
    """The tiny model fitted to TINY_PAIRS, exported with beam width 2."""
    path = str(tmp_path_factory.mktemp("export"))
    module = translator.Translator(tiny_model, tft.TFTransformOutput(transform_output_dir),
                                   DecodingConfig(beam_width=2))
    translator.save(module, path)
    return path


@pytest.fixture(scope="module")
def loaded(export_dir) -> tf.Module:
    return tf.saved_model.load(export_dir)


# Word salads the tiny model never saw: its beams of width 1, 2 and 3 end on different
# translations of most of them, where the memorised pairs translate the same at any width.
UNSEEN = ["i", "pen", "he", "this book", "pen she cat", "pen raining", "that dogs has",
          "pen today my"]


def _translate(loaded, sentences: list[str], width: int) -> tuple[list[str], np.ndarray]:
    outputs = loaded.signatures[contract.OPTIONS_SIGNATURE](
        **{contract.TEXT_INPUT: tf.constant(sentences),
           contract.BEAM_WIDTH_INPUT: tf.constant(width)})
    return ([t.decode() for t in outputs[contract.TRANSLATIONS_OUTPUT].numpy()],
            outputs[contract.SCORES_OUTPUT].numpy())


def test_exported_model_translates_with_any_beam_width(loaded):
    """Each width decodes at that width: 1 as the greedy attention signature, 2 as serving_default
    (exported with width 2), and 1, 2 and 3 disagree on unseen sentences, so an ignored width shows."""
    seen = [en for en, _ in TINY_PAIRS[:3]]
    by_width = {}
    for width in (1, 2, 3):
        translations, scores = _translate(loaded, seen + UNSEEN, width)
        assert translations[:3] == [ja for _, ja in TINY_PAIRS[:3]] and np.all(scores <= 0)
        by_width[width] = translations[3:]
    assert len({tuple(answers) for answers in by_width.values()}) == 3

    greedy = loaded.signatures[contract.ATTENTION_SIGNATURE](**{contract.TEXT_INPUT: tf.constant(UNSEEN)})
    assert by_width[1] == [
        " ".join(t.decode() for t, i in zip(tokens, ids, strict=True)
                 if i not in (features.PAD_ID, features.END_ID))
        for tokens, ids in zip(greedy[contract.TARGET_TOKENS_OUTPUT].numpy(),
                               greedy[contract.TARGET_IDS_OUTPUT].numpy(), strict=True)]
    default = loaded.signatures[contract.SERVING_SIGNATURE](**{contract.TEXT_INPUT: tf.constant(UNSEEN)})
    assert by_width[2] == [t.decode() for t in default[contract.TRANSLATIONS_OUTPUT].numpy()]


def test_the_exported_length_penalty_decides_between_finished_translations(loaded, tiny_model,
                                                                           transform_output_dir):
    """The export's length penalty (DecodingConfig's 1.0) reaches its beam search: without it, the
    same model at the same width picks other translations of some unseen sentences, each more likely
    and no longer (the penalty favours length)."""
    unpenalised_module = translator.Translator(tiny_model, tft.TFTransformOutput(transform_output_dir),
                                               DecodingConfig(beam_width=2, length_penalty=0.0))
    penalised, penalised_scores = _translate(loaded, UNSEEN, 4)
    outputs = unpenalised_module.translate_with_options(tf.constant(UNSEEN), tf.constant(4))
    unpenalised = [t.decode() for t in outputs[contract.TRANSLATIONS_OUTPUT].numpy()]
    unpenalised_scores = outputs[contract.SCORES_OUTPUT].numpy()
    differ = [i for i, (p, u) in enumerate(zip(penalised, unpenalised, strict=True)) if p != u]
    assert differ, "the length penalty changed no translation"
    for i in differ:
        assert unpenalised_scores[i] > penalised_scores[i], (UNSEEN[i], penalised[i], unpenalised[i])
        assert len(unpenalised[i].split()) <= len(penalised[i].split()), (UNSEEN[i], penalised[i],
                                                                          unpenalised[i])


def test_exported_model_rejects_width_zero(loaded):
    with pytest.raises(tf.errors.InvalidArgumentError, match="beam_width"):
        loaded.signatures[contract.OPTIONS_SIGNATURE](
            **{contract.TEXT_INPUT: tf.constant(["i like cats ."]),
               contract.BEAM_WIDTH_INPUT: tf.constant(0)})


def test_attention_signature_aligns_tokens(loaded):
    en, ja = TINY_PAIRS[0]
    outputs = loaded.signatures[contract.ATTENTION_SIGNATURE](
        **{contract.TEXT_INPUT: tf.constant([en])})
    source = [t.decode() for t in outputs[contract.SOURCE_TOKENS_OUTPUT].numpy()[0]]
    target = [t.decode() for t in outputs[contract.TARGET_TOKENS_OUTPUT].numpy()[0]]
    weights = outputs[contract.ATTENTION_OUTPUT].numpy()[0]
    assert [t for t in source if t] == en.split()
    assert target[:target.index("</s>")] == ja.split()
    assert weights.shape == (len(target), len(source))
    np.testing.assert_allclose(weights[: len(ja.split()) + 1].sum(-1), 1.0, rtol=1e-5)


def test_evaluate_picks_a_beam_width(loaded, export_dir, tmp_path):
    """Scored against width 3's translations of unseen sentences, a width-3 evaluation is perfect
    and a width-1 one is not: each decodes at the width it is given."""
    src, ref = tmp_path / "src.en", tmp_path / "ref.ja"
    src.write_text("".join(f"{en}\n" for en in UNSEEN), encoding="utf-8")
    ref.write_text("".join(f"{ja}\n" for ja in _translate(loaded, UNSEEN, 3)[0]), encoding="utf-8")
    report = saved_model_bleu.evaluate_saved_model(export_dir, str(src), str(ref), beam_width=3)
    assert report["sentences"] == len(UNSEEN)
    assert report["bleu"] == pytest.approx(100) and report["seed_bleu"] == pytest.approx(1)
    assert saved_model_bleu.evaluate_saved_model(export_dir, str(src), str(ref), beam_width=1)["bleu"] < 99


def _most_colormap_colours_in_a_pixel_row(png) -> int:
    """The most distinct viridis colours in one row of pixels. The colour bar gives each row one and a
    blank heatmap one more; further ones are heatmap cells of different weights."""
    colormap = matplotlib.colormaps["viridis"](np.linspace(0, 1, 256))[:, :3]
    pixels = matplotlib.image.imread(png)[..., :3]
    colours, rows = np.unique(pixels.reshape(-1, 3), axis=0, return_inverse=True)
    on_colormap = np.abs(colours[:, None] - colormap).max(-1).min(-1) < 0.01
    return max(len(np.unique(row[on_colormap[row]])) for row in rows.reshape(pixels.shape[:2]))


def test_attention_command_writes_a_png(export_dir, tmp_path, capsys):
    """A PNG of the heatmap, its cells not all one colour (a blank plot is a PNG too)."""
    png = tmp_path / "attention.png"
    assert cli.main(["attention", "--model", export_dir, "--out", str(png),
                     TINY_PAIRS[0][0]]) == 0
    assert capsys.readouterr().out.strip() == str(png)
    assert _most_colormap_colours_in_a_pixel_row(png) >= 3
