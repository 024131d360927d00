"""ExampleGen for a line-aligned parallel corpus (`train.en` + `train.ja`, …).

Each output split comes from one file pair: the split pattern names the source-side
file relative to `input_base` and the target side is the same name with the
language code swapped. Every pair is validated (`parallel_corpus.scan_pair`) before
the Beam pipeline writes anything, so bad data fails the component without leaving
output behind.

Usage, reading the latest of the spans `train.en.000` … `train.en.004` with `dev.en`:
  example_gen = ParallelCorpusExampleGen(input_base=data_root, train_pattern="train.en.{SPAN:3}")
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, BinaryIO, Iterable, Iterator, Optional

from absl import logging
import apache_beam as beam
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen import component
from tfx.components.example_gen import driver
from tfx.components.example_gen import input_processor
from tfx.components.example_gen import utils
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import proto_utils

from google.protobuf import json_format
from google.protobuf import struct_pb2

from enja.components import parallel_corpus
from enja.preprocessing import features

# Int custom property of the output Examples: pairs dropped for an empty side, all splits.
DROPPED_EMPTY_PAIRS_PROPERTY = "dropped_empty_pairs"

_Split = example_gen_pb2.Input.Split


@dataclasses.dataclass(frozen=True)
class CorpusOptions:
    """What the executor needs beyond TFX's input config; travels in `custom_config`."""

    source_lang: str = "en"
    target_lang: str = "ja"
    # Keep only the first N line pairs of each split (0 keeps all).
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
        return cls(values["source_lang"], values["target_lang"], int(values["max_pairs"]))

    def file_pair(self, input_base: str, pattern: str) -> tuple[str, str]:
        """Returns the (source, target) paths of a resolved split pattern."""
        source = os.path.join(input_base, pattern)
        return source, parallel_corpus.target_path(source, self.source_lang, self.target_lang)


def _input_splits(exec_properties: dict[str, Any]) -> list[_Split]:
    input_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input()
    )
    return list(input_config.splits)


def _open_binary(path: str) -> BinaryIO:
    """TFX's filesystem layer, so that `input_base` may also be a GCS or HDFS path."""
    return fileio.open(path, mode="rb")


def _to_example(pair: tuple[str, str]) -> tf.train.Example:
    source, target = pair
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode("utf-8")]))
                for key, text in ((features.SOURCE_KEY, source), (features.TARGET_KEY, target))
            }
        )
    )


def _read_file_pair(files: tuple[str, str], max_pairs: int) -> Iterator[tuple[str, str]]:
    return parallel_corpus.read_pairs(*files, max_pairs=max_pairs, opener=_open_binary)


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _ParallelCorpusToExample(  # pylint: disable=invalid-name
    pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str
) -> beam.PCollection:
    """Reads one file pair as tf.Examples with one `en` and one `ja` bytes value."""
    options = CorpusOptions.from_exec_properties(exec_properties)
    files = options.file_pair(exec_properties[standard_component_specs.INPUT_BASE_KEY], split_pattern)
    return (
        pipeline
        | "FilePair" >> beam.Create([files])
        | "ReadPairs" >> beam.FlatMap(_read_file_pair, max_pairs=options.max_pairs)
        | "ToExample" >> beam.Map(_to_example)
    )


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Validates every file pair, then writes one output split per input split."""

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
        dropped = 0
        for split in _input_splits(exec_properties):
            files = options.file_pair(input_base, split.pattern)
            counts = parallel_corpus.scan_pair(*files, max_pairs=options.max_pairs, opener=_open_binary)
            logging.info(
                "Split %s (%s): %d pairs, %d dropped for an empty side.",
                split.name, " + ".join(files), counts.kept, counts.dropped_empty,
            )
            dropped += counts.dropped_empty

        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        try:
            super().Do(input_dict, output_dict, exec_properties)
        except Exception:
            # A failed Beam write can leave finished splits or temporary shards behind.
            for split_name in artifact_utils.decode_split_names(examples.split_names):
                split_uri = artifact_utils.get_split_uri([examples], split_name)
                if fileio.exists(split_uri):
                    fileio.rmtree(split_uri)
            raise
        examples.set_int_custom_property(DROPPED_EMPTY_PAIRS_PROPERTY, dropped)


def _has_span_spec(pattern: str) -> bool:
    is_match_span, is_match_date, _ = utils.verify_split_pattern_specs(_Split(pattern=pattern))
    return is_match_span or is_match_date


class _InputProcessor(input_processor.FileBasedInputProcessor):
    """Resolves the span of the spanned splits and uses un-spanned ones (dev) as they are.

    TFX's processor requires every split to carry the same span spec, but the
    training data arrives in spans while the dev set is fixed.
    """

    def __init__(
        self,
        input_base_uri: str,
        splits: Iterable[_Split],
        range_config: Optional[range_config_pb2.RangeConfig] = None,
    ):
        splits = list(splits)
        spanned = [split for split in splits if _has_span_spec(split.pattern)]
        # Checks the span specs and range_config against the spanned splits only.
        super().__init__(input_base_uri, spanned or splits, range_config)
        # `calculate_splits_fingerprint_span_and_version` adopts the first split's span,
        # lets a later split replace it only while it is 0, and otherwise raises "Latest
        # span should be the same for each split". An un-spanned split reports span 0:
        # after train's span 4 it fails that check, before it the 0 is replaced.
        self._splits = sorted(splits, key=lambda split: _has_span_spec(split.pattern))

    def get_pattern_for_span_version(self, pattern: str, span: int, version: Optional[int]) -> str:
        if not _has_span_spec(pattern):
            return pattern
        return super().get_pattern_for_span_version(pattern, span, version)


class Driver(driver.FileBasedDriver):
    """Resolves spans across mixed splits; fingerprints both sides of each pair."""

    def get_input_processor(
        self,
        splits: Iterable[_Split],
        range_config: Optional[range_config_pb2.RangeConfig] = None,
        input_base_uri: Optional[str] = None,
    ) -> input_processor.InputProcessor:
        return _InputProcessor(input_base_uri, splits, range_config)

    def resolve_exec_properties(
        self,
        exec_properties: dict[str, Any],
        pipeline_info: data_types.PipelineInfo,
        component_info: data_types.ComponentInfo,
    ) -> dict[str, Any]:
        exec_properties = super().resolve_exec_properties(exec_properties, pipeline_info, component_info)
        # TFX fingerprints only the files the patterns name, i.e. the source side;
        # without the target side an edited `.ja` file would hit the cache.
        options = CorpusOptions.from_exec_properties(exec_properties)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        target_fingerprints = [
            io_utils.generate_fingerprint(split.name, options.file_pair(input_base, split.pattern)[1])
            for split in _input_splits(exec_properties)
        ]
        exec_properties[utils.FINGERPRINT_PROPERTY_NAME] = "\n".join(
            [exec_properties[utils.FINGERPRINT_PROPERTY_NAME], *target_fingerprints]
        )
        return exec_properties


class ParallelCorpusExampleGen(component.FileBasedExampleGen):
    """Turns `<name>.en` / `<name>.ja` file pairs into `train` and `eval` tf.Examples.

    Outputs one Examples artifact with bytes features `features.SOURCE_KEY` and
    `TARGET_KEY` (`en`, `ja`, whatever the file names' language codes), the `span`
    custom property (0 without a span spec), and `dropped_empty_pairs`.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    DRIVER_CLASS = Driver

    def __init__(
        self,
        input_base: str,
        train_pattern: str = "train.en",
        eval_pattern: str = "dev.en",
        max_pairs: int = 0,
        range_config: Optional[range_config_pb2.RangeConfig] = None,
        source_lang: str = "en",
        target_lang: str = "ja",
    ):
        """Builds the component.

        Args:
          input_base: Directory holding the corpus files.
          train_pattern: Source-side training file relative to `input_base`; may hold
            a span spec to read one span (the latest unless `range_config` says
            otherwise). TFX fills a bare `{SPAN}` unpadded, so `train.en.003` needs
            `train.en.{SPAN:3}`.
          eval_pattern: Source-side evaluation file relative to `input_base`.
          max_pairs: Keep only the first N line pairs of each split (0 keeps all).
          range_config: Selects the span, as a static range of one span.
          source_lang: Language code in the source-side file names.
          target_lang: Language code that replaces it in the target-side names.
        """
        options = CorpusOptions(source_lang, target_lang, max_pairs)
        for pattern in (train_pattern, eval_pattern):
            options.file_pair(input_base, pattern)  # Fails at pipeline construction.
        super().__init__(
            input_base=input_base,
            input_config=example_gen_pb2.Input(
                splits=[_Split(name="train", pattern=train_pattern), _Split(name="eval", pattern=eval_pattern)]
            ),
            custom_config=options.to_custom_config(),
            range_config=range_config,
        )
