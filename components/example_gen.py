"""ExampleGen for a line-aligned parallel corpus (`train.en` + `train.ja`, …).

Each output split comes from file pairs: the split pattern names the source-side
file relative to `input_base` and the target side is the same name with the
language code swapped. A pattern with a span spec (`train.en.{SPAN:3}`) reads a
window of spans (`spans.SpanWindow`). Every pair is validated
(`parallel_corpus.scan_pair`) before the Beam pipeline writes anything, so bad data
fails the component without leaving output behind. The same scan cuts each pair into
chunks of `CHUNK_LINES` lines, byte ranges of both files, and each chunk is one Beam
element: a distributed runner spreads a file pair over its workers.

Spans and checks live in the executor, and TFX's input config holds plain globs over
both sides of every file a split may read: the stock FileBasedDriver — the one the
Kubeflow Pipelines v2 compiler substitutes for any FileBasedExampleGen's — then
fingerprints the `.ja` files too, and needs no span logic of ours. Where no driver ran (the
open-source Kubeflow backend never runs the spec's `preCacheCheck` hook), the executor takes
the same fingerprint itself, so the output is the same on both.

Usage, reading the latest two of the spans `train.en.000` … `train.en.004` with `dev.en`:
  example_gen = ParallelCorpusExampleGen(
      input_base=data_root, train_pattern="train.en.{SPAN:3}", window=SpanWindow(spans=2))
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

import apache_beam as beam
import tensorflow as tf
from absl import logging
from google.protobuf import json_format, struct_pb2
from tfx import types
from tfx.components.example_gen import base_example_gen_executor, component, input_processor
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from enja.components import names, pair_features, parallel_corpus, spans
from enja.preprocessing import features

# Exec property the executor fills before Beam runs: {TFX split pattern: chunks to read}.
_CHUNKS_KEY = "_chunks"
# Line pairs a Beam element reads: under 200 KB of this corpus, so the read and the element
# cost little next to converting the pairs, while a 10k-pair span spreads over 5 workers.
CHUNK_LINES = 2_000

_Split = example_gen_pb2.Input.Split


@dataclasses.dataclass(frozen=True)
class FilePair:
    """One source file, its target-side twin, its span (None without a span spec), its counts."""

    split: str
    span: int | None
    source: str
    target: str
    pairs: int = 0
    dropped_empty: int = 0
    empty_source: int = 0
    empty_target: int = 0

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> FilePair:
        """From the `file_pairs` property, whose numbers ML Metadata stores as doubles."""
        return cls(**{name: value[name] if name in ("split", "source", "target") or value[name] is None
                      else int(value[name]) for name in value})

    def describe(self) -> str:
        """How a message names it: its span, or its file when it has none."""
        return (f"{self.split} span {self.span}" if self.span is not None
                else f"{self.split} ({os.path.basename(self.source)})")


@dataclasses.dataclass(frozen=True)
class CorpusOptions:
    """What the executor needs beyond TFX's input config; travels in `custom_config`."""

    # Source-side pattern of each split, relative to the input base.
    split_patterns: dict[str, str]
    window: spans.SpanWindow = spans.SpanWindow()
    source_lang: str = "en"
    target_lang: str = "ja"
    # Keep only the first N line pairs of each file pair (0 keeps all).
    max_pairs: int = 0

    def to_custom_config(self) -> example_gen_pb2.CustomConfig:
        config = example_gen_pb2.CustomConfig()
        config.custom_config.Pack(json_format.ParseDict(dataclasses.asdict(self), struct_pb2.Struct()))
        return config

    @classmethod
    def from_exec_properties(cls, exec_properties: dict[str, Any]) -> CorpusOptions:
        config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY], example_gen_pb2.CustomConfig()
        )
        fields = struct_pb2.Struct()
        config.custom_config.Unpack(fields)
        values = json_format.MessageToDict(fields)
        # Struct stores every number as a double.
        window = spans.SpanWindow(**{name: int(value) for name, value in values["window"].items()})
        return cls(values["split_patterns"], window, values["source_lang"], values["target_lang"],
                   int(values["max_pairs"]))

    def target_of(self, source: str) -> str:
        return parallel_corpus.target_path(source, self.source_lang, self.target_lang)

    def tfx_glob(self, pattern: str) -> str:
        """TFX's split pattern: a glob over both sides of every file the pattern may name."""
        return spans.as_glob(parallel_corpus.target_path(pattern, self.source_lang, "*"))

    def file_pairs(self, input_base: str, split: str) -> list[FilePair]:
        """The split's file pairs: the window's spans, oldest first, or its one file."""
        pattern = self.split_patterns[split]
        if not spans.has_span_spec(pattern):
            source = os.path.join(input_base, pattern)
            return [FilePair(split, None, source, self.target_of(source))]
        chosen = spans.select(spans.available_spans(input_base, pattern, fileio.glob),
                              self.window, pattern)
        return [FilePair(split, span, source, self.target_of(source))
                for span, source in chosen.items()]


def spans_read(examples: types.Artifact) -> list[int]:
    """The training spans an Examples artifact holds (its numbers come back as doubles)."""
    return [int(span) for span in examples.get_json_value_custom_property(names.SPANS) or []]


def file_pairs_read(examples: types.Artifact) -> list[FilePair]:
    return [FilePair.from_json(pair)
            for pair in examples.get_json_value_custom_property(names.FILE_PAIRS) or []]


def _open_binary(path: str) -> BinaryIO:
    """TFX's filesystem layer, so that `input_base` may also be a GCS or HDFS path."""
    return fileio.open(path, mode="rb")


def _bytes_feature(text: str) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode("utf-8")]))


def _to_example(pair: tuple[str, str]) -> tf.train.Example:
    """The pair's two sentences and the features derived from them."""
    source, target = pair
    feature = {features.SOURCE_KEY: _bytes_feature(source), features.TARGET_KEY: _bytes_feature(target)}
    for key, value in pair_features.derive(source, target).items():
        feature[key] = (tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
                        if isinstance(value, int) else _bytes_feature(value))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _read_chunk(chunk: parallel_corpus.Chunk) -> Iterator[tuple[str, str]]:
    return parallel_corpus.read_chunk(chunk, opener=_open_binary)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _ParallelCorpusToExample(
    pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str
) -> beam.PCollection:
    """Reads a split's chunks (one Beam element each) as tf.Examples.

    The Reshuffle lets a runner hand the chunks to different workers instead of
    reading them all where `Create` produced them.
    """
    return (
        pipeline
        | "Chunks" >> beam.Create(exec_properties[_CHUNKS_KEY][split_pattern])
        | "Distribute" >> beam.Reshuffle()
        | "ReadPairs" >> beam.FlatMap(_read_chunk)
        | "ToExample" >> beam.Map(_to_example)
    )


def _input_splits(exec_properties: dict[str, Any]) -> list[_Split]:
    input_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input()
    )
    return list(input_config.splits)


def _input_fingerprint(input_base: str, exec_properties: dict[str, Any]) -> str:
    """What TFX's FileBasedDriver records: the fingerprint of every file the globs match."""
    processor = input_processor.FileBasedInputProcessor(input_base, _input_splits(exec_properties))
    return processor.get_input_fingerprint(*processor.resolve_span_and_version())


def _scan(options: CorpusOptions,
          file_pair: FilePair) -> tuple[FilePair, tuple[parallel_corpus.Chunk, ...]]:
    """Validates a file pair whole; returns it with its counts, and the chunks that read it."""
    scan = parallel_corpus.scan_pair(file_pair.source, file_pair.target, max_pairs=options.max_pairs,
                                     opener=_open_binary, chunk_lines=CHUNK_LINES)
    counts = scan.counts
    logging.info("%s (%s + %s): %d pairs, %d dropped for an empty side, in %d chunks.",
                 file_pair.describe(), file_pair.source, file_pair.target, counts.kept,
                 counts.dropped_empty, len(scan.chunks))
    counted = dataclasses.replace(file_pair, pairs=counts.kept, dropped_empty=counts.dropped_empty,
                                  empty_source=counts.empty_source, empty_target=counts.empty_target)
    return counted, scan.chunks


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Resolves, validates and chunks every file pair, then writes one output split per input split."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _ParallelCorpusToExample

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        options = CorpusOptions.from_exec_properties(exec_properties)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        chunks: dict[str, list[parallel_corpus.Chunk]] = {}
        read: list[FilePair] = []
        for split in _input_splits(exec_properties):
            chunks[split.pattern] = []
            for file_pair in options.file_pairs(input_base, split.name):
                counted, pair_chunks = _scan(options, file_pair)
                read.append(counted)
                chunks[split.pattern].extend(pair_chunks)

        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        if not exec_properties.get(example_gen_utils.FINGERPRINT_PROPERTY_NAME):
            examples.set_string_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME,
                                                _input_fingerprint(input_base, exec_properties))
        try:
            super().Do(input_dict, output_dict, {**exec_properties, _CHUNKS_KEY: chunks})
        except Exception:
            # A failed Beam write can leave finished splits or temporary shards behind.
            for split_name in artifact_utils.decode_split_names(examples.split_names):
                split_uri = artifact_utils.get_split_uri([examples], split_name)
                if fileio.exists(split_uri):
                    fileio.rmtree(split_uri)
            raise
        train_spans = [pair.span for pair in read if pair.split == "train" and pair.span is not None]
        examples.span = max(train_spans, default=0)
        examples.set_int_custom_property("span", examples.span)
        examples.set_json_value_custom_property(names.SPANS, train_spans)
        examples.set_json_value_custom_property(
            names.FILE_PAIRS, [dataclasses.asdict(pair) for pair in read])
        examples.set_int_custom_property(
            names.DROPPED_EMPTY_PAIRS, sum(pair.dropped_empty for pair in read))


class ParallelCorpusExampleGen(component.FileBasedExampleGen):
    """Turns `<name>.en` / `<name>.ja` file pairs into `train` and `eval` tf.Examples.

    Outputs one Examples artifact with bytes features `features.SOURCE_KEY` and
    `TARGET_KEY` (`en`, `ja`, whatever the file names' language codes) and the
    features of `pair_features.derive`; and the custom properties `span` (the latest
    training span, 0 without a span spec), `spans`, `file_pairs` and `dropped_empty_pairs`.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        input_base: str,
        train_pattern: str = "train.en",
        eval_pattern: str = "dev.en",
        window: spans.SpanWindow = spans.SpanWindow(),
        max_pairs: int = 0,
        source_lang: str = "en",
        target_lang: str = "ja",
    ) -> None:
        """Builds the component.

        Args:
          input_base: Directory holding the corpus files.
          train_pattern: Source-side training file relative to `input_base`; may hold
            a span spec (`train.en.{SPAN:3}` for `train.en.003`) to read a window of spans.
          eval_pattern: Source-side evaluation file relative to `input_base`.
          window: The spans read from a pattern with a span spec.
          max_pairs: Keep only the first N line pairs of each file pair (0 keeps all).
          source_lang: Language code in the source-side file names.
          target_lang: Language code that replaces it in the target-side names.
        """
        options = CorpusOptions({"train": train_pattern, "eval": eval_pattern}, window,
                                source_lang, target_lang, max_pairs)
        for pattern in options.split_patterns.values():
            options.target_of(pattern)  # Fails at pipeline construction.
        super().__init__(
            input_base=input_base,
            input_config=example_gen_pb2.Input(splits=[
                _Split(name=name, pattern=options.tfx_glob(pattern))
                for name, pattern in options.split_patterns.items()]),
            custom_config=options.to_custom_config(),
        )
