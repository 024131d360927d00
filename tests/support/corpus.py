"""Data for tests: tiny made-up pairs and their Transform output, and spans of the real corpus.

The tiny pairs are tokenized like the corpus, which itself stays out of the repository: the real
spans are read from $ENJA_DATA_ROOT.
"""
from __future__ import annotations

import pathlib
from collections.abc import Callable

from enja.pipeline import data

# Made-up pairs, tokenized like the corpus: small enough for a model to memorise in seconds.
TINY_PAIRS = [
    ("i like cats .", "私 は 猫 が 好き で す 。"),
    ("i like dogs .", "私 は 犬 が 好き で す 。"),
    ("he likes cats .", "彼 は 猫 が 好き で す 。"),
    ("she has a dog .", "彼女 は 犬 を 飼 っ て い ま す 。"),
    ("this is a pen .", "これ は ペン で す 。"),
    ("that is my cat .", "あれ は 私 の 猫 で す 。"),
    ("it is raining today .", "今日 は 雨 が 降 っ て い ま す 。"),
    ("i read a book .", "私 は 本 を 読 み ま し た 。"),
]
# Beam in this process with one worker: TFX's Beam components without a pool of processes.
BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]

Lines = list[str]


def tiny_vocab_config(max_source_length: int = 6, max_target_length: int = 12) -> dict:
    """Transform's custom_config for TINY_PAIRS: every token kept, sequences as long as theirs."""
    return {"vocab": {"source_vocab_size": 0, "target_vocab_size": 0, "min_frequency": 1,
                      "max_source_length": max_source_length,
                      "max_target_length": max_target_length}}


def tfrecord_data_accessor():
    """Reads tf.Example TFRecords with tfx_bsl, as TFX's accessor does for Transform's output."""
    from tfx import v1 as tfx
    from tfx_bsl.public import tfxio

    def tf_dataset_factory(files, options, schema):
        return tfxio.TFExampleRecord(file_pattern=files, schema=schema).TensorFlowDataset(options)
    return tfx.components.DataAccessor(tf_dataset_factory=tf_dataset_factory,
                                       record_batch_factory=None, data_view_decode_fn=None)


def write_transformed(transform_output_dir: str, pairs: list[tuple[str, str]], path: str) -> str:
    """`pairs` through the Transform graph, as Transform's output TFRecords (what the Trainer reads)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from enja.preprocessing import features

    transformed = tft.TFTransformOutput(transform_output_dir).transform_features_layer()({
        features.SOURCE_KEY: tf.constant([en for en, _ in pairs])[:, None],
        features.TARGET_KEY: tf.constant([ja for _, ja in pairs])[:, None]})
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row in range(len(pairs)):
            example = tf.train.Example()
            for key in (features.SOURCE_IDS_KEY, features.TARGET_IDS_KEY):
                example.features.feature[key].int64_list.value.extend(transformed[key][row].numpy())
            writer.write(example.SerializeToString())
    return path


def real_pairs(span: int, count: int) -> tuple[Lines, Lines]:
    """The first `count` pairs of a real span of the corpus ($ENJA_DATA_ROOT)."""
    root = pathlib.Path(data.resolve_data_root(None))
    sides = [(root / f"train.{lang}.{span:03d}").read_text(encoding="utf-8").splitlines()[:count]
             for lang in ("en", "ja")]
    return sides[0], sides[1]


def write_span(root: pathlib.Path, span: int, en: Lines, ja: Lines) -> None:
    """Span `span` as ExampleGen finds it in a landing folder: train.en.NNN and train.ja.NNN."""
    for lang, lines in (("en", en), ("ja", ja)):
        (root / f"train.{lang}.{span:03d}").write_text("".join(f"{line}\n" for line in lines),
                                                        encoding="utf-8")


def write_dev(root: pathlib.Path, count: int) -> None:
    """The first `count` dev pairs of the corpus."""
    source = pathlib.Path(data.resolve_data_root(None))
    for lang in ("en", "ja"):
        lines = (source / f"dev.{lang}").read_text(encoding="utf-8").splitlines()[:count]
        (root / f"dev.{lang}").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _joined_in_threes(lines: Lines) -> Lines:
    """Each line followed by the next two: sentences about three times the corpus's length."""
    return [" ".join(lines[(i + k) % len(lines)] for k in range(3)) for i in range(len(lines))]


# Ways to spoil a span, each the way the data would arrive in real life.
BAD_SPANS: dict[str, Callable[[Lines, Lines], tuple[Lines, Lines]]] = {
    # The two files of the span exchanged.
    "swapped": lambda en, ja: (ja, en),
    # Sentences far longer than the corpus's (still aligned and in the right languages).
    "long": lambda en, ja: (_joined_in_threes(en), _joined_in_threes(ja)),
    # Nine in ten Japanese lines lost.
    "mostly_empty_ja": lambda en, ja: (en, [line if i % 10 == 0 else "" for i, line in enumerate(ja)]),
}
