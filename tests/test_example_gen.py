"""Tests for the parallel-corpus ExampleGen: reader, executor, span driver, and a real run."""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import apache_beam as beam
import pytest
import tensorflow as tf
from tfx.components.example_gen import driver as tfx_driver
from tfx.components.example_gen import input_processor
from tfx.dsl.components.base import base_beam_executor
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local import local_dag_runner
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from enja.components import example_gen, names, pair_features, parallel_corpus
from enja.components.spans import SpanError, SpanWindow
from support.corpus import BEAM_ARGS

DEV = (["good morning .", "thank you ."], ["おはよう 。", "ありがとう 。"])


def _write(directory: os.PathLike, name: str, lines: list[str]) -> None:
    with open(os.path.join(directory, name), "wb") as f:
        f.write("".join(f"{line}\n" for line in lines).encode("utf-8"))


@pytest.fixture(name="corpus")
def _corpus(tmp_path) -> str:
    """A train pair with one pair whose Japanese side is blank, and a dev pair."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _write(corpus, "train.en", ["i am a cat .", "it rains .", "he runs ."])
    _write(corpus, "train.ja", ["吾輩 は 猫 で あ る 。", "  ", "彼 は 走 る 。"])
    _write(corpus, "dev.en", DEV[0])
    _write(corpus, "dev.ja", DEV[1])
    return str(corpus)


@pytest.fixture(name="spanned_corpus")
def _spanned_corpus(tmp_path) -> str:
    """Training spans 0–2 (one pair each, naming its span) next to an un-spanned dev set."""
    corpus = tmp_path / "spanned"
    corpus.mkdir()
    for span in range(3):
        _write(corpus, f"train.en.{span:03d}", [f"span {span} ."])
        _write(corpus, f"train.ja.{span:03d}", [f"スパン {span} 。"])
    _write(corpus, "dev.en", DEV[0])
    _write(corpus, "dev.ja", DEV[1])
    return str(corpus)


def _exec_properties(input_base: str, **kwargs: Any) -> dict[str, Any]:
    """The execution properties the component hands its driver, as JSON like TFX does."""
    return dict(example_gen.ParallelCorpusExampleGen(input_base=input_base, **kwargs).exec_properties)


def _resolve(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """Runs TFX's stock driver, as the local orchestrator does before the executor."""
    return tfx_driver.FileBasedDriver(metadata_handle=None).resolve_exec_properties(
        exec_properties, None, None)


def _run(
    tmp_path,
    exec_properties: dict[str, Any],
    make_executor: Callable[[base_beam_executor.BaseBeamExecutor.Context],
                            example_gen.Executor] = example_gen.Executor,
) -> standard_artifacts.Examples:
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    # A pipeline factory instead of beam_pipeline_args: given args, TFX first spends
    # seconds packaging itself for remote workers, which the in-memory runner never uses.
    context = base_beam_executor.BaseBeamExecutor.Context(
        make_beam_pipeline_fn=lambda: beam.Pipeline(argv=BEAM_ARGS), tmp_dir=str(tmp_path / "tmp")
    )
    make_executor(context).Do({}, {"examples": [examples]}, exec_properties)
    return examples


def _read(examples: standard_artifacts.Examples, split: str) -> list[tuple[str, str]]:
    """Returns the split's (en, ja) pairs, sorted because ExampleGen shuffles."""
    files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], split), "*.gz"))
    pairs = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        (en,), (ja,) = feature["en"].bytes_list.value, feature["ja"].bytes_list.value
        en, ja = en.decode(), ja.decode()
        derived = {key: (value.int64_list.value or value.bytes_list.value)[0]
                   for key, value in feature.items() if key not in ("en", "ja")}
        assert derived == {key: value.encode() if isinstance(value, str) else value
                           for key, value in pair_features.derive(en, ja).items()}
        pairs.append((en, ja))
    return sorted(pairs)


def _files_under(path: str) -> list[str]:
    return [os.path.join(root, name) for root, _, names in os.walk(path) for name in names]


# The reader on its own.


@pytest.mark.parametrize(
    ("source", "target"),
    [("train.en", "train.ja"), ("d/train.en.003", "d/train.ja.003"), ("en.d/dev.en", "en.d/dev.ja")],
)
def test_target_path_swaps_the_language_code_in_the_file_name(source, target):
    assert parallel_corpus.target_path(source, "en", "ja") == target


@pytest.mark.parametrize("source", ["train", "en.en", "english.txt"])
def test_target_path_rejects_names_without_exactly_one_code(source):
    with pytest.raises(parallel_corpus.PatternError, match="exactly once"):
        parallel_corpus.target_path(source, "en", "ja")


def test_lines_split_on_newline_only(tmp_path):
    # U+2028 is a line break to str.splitlines but part of a sentence here.
    _write(tmp_path, "x.en", ["a\u2028b", "c"])
    _write(tmp_path, "x.ja", ["A", "C"])
    pairs = parallel_corpus.read_pairs(str(tmp_path / "x.en"), str(tmp_path / "x.ja"))
    assert list(pairs) == [("a\u2028b", "A"), ("c", "C")]


def _write_bytes(directory: os.PathLike, name: str, content: bytes) -> str:
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(content)
    return path


# Both sides: empty lines fall on chunk boundaries of 1, 2 and 3 lines, a pair is empty
# on both sides, and the last line has no trailing newline (on the English side only).
CHUNKED_EN = b"a .\n\nc .\n\ne .\nf .\n\nh .\ni ."
CHUNKED_JA = "あ\nい\n\n\nお\nか\n  \nく\nけ\n".encode()


@pytest.mark.parametrize("chunk_lines", [1, 2, 3, 4, 0])
@pytest.mark.parametrize("max_pairs", [0, 5])
def test_chunks_yield_exactly_the_pairs_of_the_whole_file_reader(tmp_path, chunk_lines, max_pairs):
    source = _write_bytes(tmp_path, "x.en", CHUNKED_EN)
    target = _write_bytes(tmp_path, "x.ja", CHUNKED_JA)

    scan = parallel_corpus.scan_pair(source, target, max_pairs=max_pairs, chunk_lines=chunk_lines)

    whole = list(parallel_corpus.read_pairs(source, target, max_pairs=max_pairs))
    assert [pair for chunk in scan.chunks for pair in parallel_corpus.read_chunk(chunk)] == whole
    assert scan.counts.kept == len(whole)
    lines = max_pairs or 9
    step = chunk_lines or lines
    assert [chunk.first_line for chunk in scan.chunks] == list(range(1, lines + 1, step))
    last = scan.chunks[-1]
    assert (last.source_range[1], last.target_range[1]) == (
        (len(CHUNKED_EN), len(CHUNKED_JA)) if not max_pairs else
        (len(b"a .\n\nc .\n\ne .\n"), len("あ\nい\n\n\nお\n".encode())))


def test_a_chunk_names_the_file_and_line_of_invalid_utf8(tmp_path):
    source = _write_bytes(tmp_path, "x.en", b"a\nb\nc\nd\n")
    target = _write_bytes(tmp_path, "x.ja", b"A\nB\nC\nD\n")
    _, second = parallel_corpus.scan_pair(source, target, chunk_lines=2).chunks
    _write_bytes(tmp_path, "x.ja", b"A\nB\nC\n\xe5\n")  # Spoiled after the scan, same size.

    with pytest.raises(parallel_corpus.InvalidUtf8Error, match=r"x\.ja, line 4: invalid UTF-8"):
        list(parallel_corpus.read_chunk(second))


def test_a_chunk_of_a_file_changed_after_the_scan_fails(tmp_path):
    source = _write_bytes(tmp_path, "x.en", b"a\nb\nc\n")
    target = _write_bytes(tmp_path, "x.ja", b"AB\nC\nD\n")
    first, _ = parallel_corpus.scan_pair(source, target, chunk_lines=2).chunks
    _write_bytes(tmp_path, "x.ja", b"A\nB\nC\nD\n")

    with pytest.raises(parallel_corpus.CorpusError, match="changed after it was scanned"):
        list(parallel_corpus.read_chunk(first))


# The executor.


@pytest.mark.parametrize("chunk_lines", [example_gen.CHUNK_LINES, 1])
def test_writes_en_ja_examples_to_train_and_eval(tmp_path, corpus, monkeypatch, chunk_lines):
    """The same examples whatever the chunks: here one a file pair, or one a line."""
    monkeypatch.setattr(example_gen, "CHUNK_LINES", chunk_lines)
    examples = _run(tmp_path, _exec_properties(corpus))

    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval"]
    assert _read(examples, "train") == [("he runs .", "彼 は 走 る 。"),
                                        ("i am a cat .", "吾輩 は 猫 で あ る 。")]
    assert _read(examples, "eval") == sorted(zip(*DEV, strict=True))
    assert examples.get_int_custom_property(names.DROPPED_EMPTY_PAIRS) == 1


def test_max_pairs_keeps_the_first_line_pairs_of_each_split(tmp_path, corpus):
    examples = _run(tmp_path, _exec_properties(corpus, max_pairs=2))

    # The second train pair is blank on one side: dropped, not replaced by the third.
    assert _read(examples, "train") == [("i am a cat .", "吾輩 は 猫 で あ る 。")]
    assert _read(examples, "eval") == sorted(zip(*DEV, strict=True))
    assert examples.get_int_custom_property(names.DROPPED_EMPTY_PAIRS) == 1


def test_mismatched_line_counts_fail_before_writing(tmp_path, corpus):
    _write(corpus, "dev.ja", DEV[1] + ["余分 。"])

    with pytest.raises(parallel_corpus.LineCountMismatchError) as error:
        _run(tmp_path, _exec_properties(corpus))

    message = str(error.value)
    assert os.path.join(corpus, "dev.en") in message and "has 2 lines" in message
    assert os.path.join(corpus, "dev.ja") in message and "has 3" in message
    assert not _files_under(str(tmp_path / "examples"))


def test_invalid_utf8_fails_with_file_and_line_before_writing(tmp_path, corpus):
    with open(os.path.join(corpus, "train.ja"), "ab") as f:
        f.write(b"\xe5\x90\n")  # A truncated three-byte character, on line 4.
    with open(os.path.join(corpus, "train.en"), "a") as f:
        f.write("four .\n")

    with pytest.raises(parallel_corpus.InvalidUtf8Error, match=r"train\.ja, line 4: invalid UTF-8"):
        _run(tmp_path, _exec_properties(corpus))
    assert not _files_under(str(tmp_path / "examples"))


class _EvalWriteFailsExecutor(example_gen.Executor):
    """Dies inside the Beam pipeline, after validation passed, leaving a partial shard."""

    def __init__(self, context: base_beam_executor.BaseBeamExecutor.Context, partial_shard: str):
        super().__init__(context)
        self._partial_shard = partial_shard

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        read, partial_shard = super().GetInputSourceToExamplePTransform(), self._partial_shard

        def write_partial_shard_and_fail(example):
            os.makedirs(os.path.dirname(partial_shard), exist_ok=True)
            open(partial_shard, "wb").close()
            raise RuntimeError("eval write failed")

        @beam.ptransform_fn
        def read_then_fail_eval(pipeline, exec_properties, split_pattern):
            examples = pipeline | "Read" >> read(exec_properties, split_pattern)
            if split_pattern != "dev.*":
                return examples
            return examples | "Fail" >> beam.Map(write_partial_shard_and_fail)

        return read_then_fail_eval


def test_failure_inside_beam_removes_every_split(tmp_path, corpus):
    partial_shard = str(tmp_path / "examples" / "Split-eval" / "data_tfrecord-00000-of-00001.gz")

    with pytest.raises(RuntimeError, match="eval write failed"):
        _run(tmp_path, _exec_properties(corpus), lambda context: _EvalWriteFailsExecutor(context,
                                                                                         partial_shard))
    assert not _files_under(str(tmp_path / "examples"))


# Spans.


def _train_spans(examples: standard_artifacts.Examples) -> list[int]:
    return examples.get_json_value_custom_property(names.SPANS)


@pytest.mark.parametrize(("window", "expected"), [
    (SpanWindow(), [0, 1, 2]), (SpanWindow(spans=1), [2]), (SpanWindow(spans=2), [1, 2]),
    (SpanWindow(spans=1, end_span=1), [1]), (SpanWindow(end_span=1), [0, 1])])
def test_a_window_of_spans_is_read_next_to_the_unspanned_eval_split(tmp_path, spanned_corpus,
                                                                     window, expected):
    examples = _run(tmp_path, _exec_properties(spanned_corpus, train_pattern="train.en.{SPAN:3}",
                                               window=window))

    assert _read(examples, "train") == sorted((f"span {span} .", f"スパン {span} 。")
                                              for span in expected)
    assert _read(examples, "eval") == sorted(zip(*DEV, strict=True))
    assert _train_spans(examples) == expected and examples.span == expected[-1]
    file_pairs = examples.get_json_value_custom_property(names.FILE_PAIRS)
    assert [(pair["split"], pair["span"], pair["pairs"]) for pair in file_pairs] == [
        *(("train", span, 1) for span in expected), ("eval", None, 2)]


def test_a_window_ending_at_a_missing_span_fails_naming_the_spans_on_disk(tmp_path, spanned_corpus):
    with pytest.raises(SpanError, match=r"span 7 .* spans on disk: \[0, 1, 2\]"):
        _run(tmp_path, _exec_properties(spanned_corpus, train_pattern="train.en.{SPAN:3}",
                                        window=SpanWindow(end_span=7)))
    assert not _files_under(str(tmp_path / "examples"))


def test_the_stock_drivers_fingerprint_covers_both_sides_of_every_span(spanned_corpus):
    """What TFX's local driver and its Kubeflow v2 driver compute, without any driver of ours."""
    exec_properties = _exec_properties(spanned_corpus, train_pattern="train.en.{SPAN:3}")
    resolved = _resolve(exec_properties)
    # Three spans with two sides each, and the two dev files.
    assert "num_files:6," in resolved["input_fingerprint"]
    assert "num_files:2," in resolved["input_fingerprint"]

    # The Kubeflow v2 driver resolves with the same processor; an edited .ja changes it.
    splits = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties["input_config"], splits)

    def fingerprint() -> str:
        processor = input_processor.FileBasedInputProcessor(spanned_corpus, splits.splits)
        span, version = processor.resolve_span_and_version()
        return processor.get_input_fingerprint(span, version)
    before = fingerprint()
    _write(spanned_corpus, "train.ja.001", ["スパン 1 を 直 し た 。"])
    assert fingerprint() != before


def test_local_dag_runner_records_the_spans_on_the_output(tmp_path, spanned_corpus):
    connection = metadata.sqlite_metadata_connection_config(str(tmp_path / "metadata.sqlite"))
    component = example_gen.ParallelCorpusExampleGen(
        input_base=spanned_corpus, train_pattern="train.en.{SPAN:3}", window=SpanWindow(spans=1))
    local_dag_runner.LocalDagRunner().run(
        tfx_pipeline.Pipeline(
            pipeline_name="example_gen_test",
            pipeline_root=str(tmp_path / "root"),
            components=[component],
            metadata_connection_config=connection,
            beam_pipeline_args=BEAM_ARGS,
        )
    )

    with metadata.Metadata(connection) as store:
        [artifact] = store.store.get_artifacts_by_type(standard_artifacts.Examples.TYPE_NAME)
    examples = standard_artifacts.Examples()
    examples.set_mlmd_artifact(artifact)
    assert examples.get_int_custom_property("span") == 2 and _train_spans(examples) == [2]
    assert examples.get_int_custom_property(names.DROPPED_EMPTY_PAIRS) == 0
    assert _read(examples, "train") == [("span 2 .", "スパン 2 。")]
    assert _read(examples, "eval") == sorted(zip(*DEV, strict=True))
