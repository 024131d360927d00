"""`evaluate_saved_model` on a stand-in SavedModel with a real serving signature."""
from __future__ import annotations

import pathlib
import re

import pytest
import sacrebleu
import tensorflow as tf

from enja.models.evaluation import bleu, saved_model_bleu
from enja.serving import contract

SOURCES = ["i have a pen .", "he lived a hard life .", "show your own business .", "where is the station ?",
           "hello ."]
REFERENCES = [
    "私 は ペン を 持 っ て い る 。",
    "彼 は つら い 人生 を 送 っ た 。",
    "自分 の 事 を しろ 。",
    "駅 は どこ で す か 。",
    "こんにちは 。",
]
# The stand-in translates two sentences perfectly, two partly and one ("hello .") not at all.
TRANSLATIONS = {
    "i have a pen .": "私 は ペン を 持 っ て い る 。",
    "he lived a hard life .": "彼 は 難し い 人生 を 送 っ た 。",
    "show your own business .": "自分 の こと を しろ 。",
    "where is the station ?": "駅 は どこ で す か 。",
}
UNKNOWN = "わか り ませ ん"


class _StandIn(tf.Module):
    """A translator that looks each English sentence up in a fixed table."""

    def __init__(self) -> None:
        super().__init__()
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(list(TRANSLATIONS), list(TRANSLATIONS.values())),
            default_value=UNKNOWN,
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.TEXT_INPUT)])
    def serve(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        translations = self._table.lookup(text)
        return {
            contract.TRANSLATIONS_OUTPUT: translations,
            contract.SCORES_OUTPUT: tf.zeros_like(translations, dtype=tf.float32),
        }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("model"))
    module = _StandIn()
    tf.saved_model.save(module, path, signatures={contract.SERVING_SIGNATURE: module.serve})
    return path


def _write(path: pathlib.Path, lines: list[str]) -> str:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return str(path)


def test_evaluate_saved_model_scores_translations(model_dir: str, tmp_path: pathlib.Path) -> None:
    src = _write(tmp_path / "dev.en", SOURCES)
    ref = _write(tmp_path / "dev.ja", REFERENCES)
    hypotheses = [TRANSLATIONS.get(source, UNKNOWN) for source in SOURCES]

    # A batch size that leaves a partial last batch.
    report = saved_model_bleu.evaluate_saved_model(model_dir, src, ref, batch_size=2)

    assert set(report) == {"bleu", "seed_bleu", "sentences", "seconds"}
    assert report["bleu"] == sacrebleu.corpus_bleu(hypotheses, [REFERENCES], tokenize="none").score
    assert 0 < report["bleu"] < 100
    assert report["seed_bleu"] == bleu.seed_bleu(hypotheses, REFERENCES)
    assert 0 < report["seed_bleu"] < 1
    assert report["sentences"] == len(SOURCES)
    assert report["seconds"] > 0


def test_perfect_translations_score_full_marks(model_dir: str, tmp_path: pathlib.Path) -> None:
    known = list(TRANSLATIONS)
    src = _write(tmp_path / "dev.en", known)
    ref = _write(tmp_path / "dev.ja", [TRANSLATIONS[source] for source in known])

    report = saved_model_bleu.evaluate_saved_model(model_dir, src, ref)

    assert report["bleu"] == pytest.approx(100.0)
    assert report["seed_bleu"] == pytest.approx(1.0)
    assert report["sentences"] == len(known)


def test_mismatched_line_counts_name_both_files(model_dir: str, tmp_path: pathlib.Path) -> None:
    src = _write(tmp_path / "dev.en", SOURCES)
    ref = _write(tmp_path / "dev.ja", REFERENCES[:3])

    with pytest.raises(ValueError, match=re.escape(f"{src} has 5 lines, {ref} has 3")):
        saved_model_bleu.evaluate_saved_model(model_dir, src, ref)
