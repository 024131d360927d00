"""The `beam` settings: Beam's arguments per runner, and the same outputs on every local runner."""
from __future__ import annotations

import glob
import os
import pathlib
import re

import pytest

from enja.pipeline import beam, configs
from support.corpus import real_pairs, write_dev, write_span

# Each choice with its settings, and the Beam arguments it must give.
CHOICES = [
    ({}, ["--direct_running_mode=in_memory", "--direct_num_workers=1"]),
    ({"runner": "multi_process", "direct_num_workers": 2},
     ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]),
    ({"runner": "dataflow", "project": "enja-nmt", "region": "europe-west4",
      "temp_location": "gs://enja/tmp", "sdk_container_image": "europe-docker.pkg.dev/enja/pipeline:1"},
     ["--runner=DataflowRunner", "--project=enja-nmt", "--region=europe-west4",
      "--temp_location=gs://enja/tmp", "--sdk_container_image=europe-docker.pkg.dev/enja/pipeline:1"]),
    ({"runner": "flink", "job_endpoint": "localhost:8099", "environment_config": "enja-pipeline:1"},
     ["--runner=PortableRunner", "--job_endpoint=localhost:8099", "--environment_type=DOCKER",
      "--environment_config=enja-pipeline:1"]),
    ({"runner": "spark", "job_endpoint": "spark-job-server:8099", "environment_type": "EXTERNAL",
      "environment_config": "localhost:50000"},
     ["--runner=PortableRunner", "--job_endpoint=spark-job-server:8099", "--environment_type=EXTERNAL",
      "--environment_config=localhost:50000"]),
    ({"runner": "flink", "job_endpoint": "localhost:8099", "environment_type": "LOOPBACK"},
     ["--runner=PortableRunner", "--job_endpoint=localhost:8099", "--environment_type=LOOPBACK"]),
]


@pytest.mark.parametrize(("settings", "expected"), CHOICES)
def test_each_runner_choice_gives_its_beam_arguments(settings, expected):
    assert beam.pipeline_args(configs.BeamConfig(**settings)) == expected


@pytest.mark.parametrize(("settings", "_"), CHOICES)
def test_beam_knows_every_argument_it_is_given(settings, _):
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(beam.pipeline_args(configs.BeamConfig(**settings)))
    assert options.get_all_options(retain_unknown_options=True) == options.get_all_options()


@pytest.mark.parametrize(("settings", "message"), [
    ({"runner": "gpu"}, "beam.runner is 'gpu'; choose one of in_memory, multi_process, dataflow, "
                        "flink, spark"),
    ({"runner": "dask"}, "beam.runner is 'dask'"),
    ({"runner": "multi_process", "direct_num_workers": -1}, "beam.direct_num_workers is -1"),
    ({"runner": "dataflow", "project": "enja-nmt"},
     "beam.runner=dataflow needs beam.region, beam.temp_location, beam.sdk_container_image"),
    ({"runner": "spark"}, "beam.runner=spark needs beam.job_endpoint"),
    ({"runner": "flink", "job_endpoint": "localhost:8099", "environment_type": "docker"},
     "beam.environment_type is 'docker'; choose one of DOCKER, PROCESS, EXTERNAL, LOOPBACK"),
    ({"runner": "flink", "job_endpoint": "localhost:8099", "environment_type": "PROCESS"},
     "beam.runner=flink with beam.environment_type=PROCESS needs beam.environment_config"),
])
def test_a_bad_setting_fails_naming_it(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        configs.BeamConfig(**settings)


def test_enja_run_rejects_a_bad_beam_setting_before_running(tmp_path, capsys):
    from enja.pipeline import cli

    status = cli.main(["run", "--preset", "smoke", "--output-dir", str(tmp_path),
                       "--set", "beam.runner=dataflow", "--set", "beam.project=enja-nmt"])
    assert status == 2
    assert "beam.runner=dataflow needs beam.region" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# ExampleGen and Transform, in memory and on two worker processes.

SPANS, PAIRS, DEV_PAIRS = 2, 150, 40
CHUNK_LINES = 40  # several chunks a span, so that two workers share every split


def _through_transform(root: pathlib.Path, corpus: pathlib.Path, runner: str) -> pathlib.Path:
    """Runs ExampleGen → ImportSchemaGen → Transform with LocalDagRunner on `runner`."""
    from tfx import v1 as tfx

    from enja.components.example_gen import ParallelCorpusExampleGen
    from enja.pipeline.pipeline import SCHEMA_FILE

    config = configs.PipelineConfig()
    example_gen = ParallelCorpusExampleGen(input_base=str(corpus),
                                           train_pattern=config.data.train_pattern,
                                           eval_pattern=config.data.eval_pattern)
    schema = tfx.components.ImportSchemaGen(schema_file=SCHEMA_FILE)
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema.outputs["schema"],
        preprocessing_fn="enja.preprocessing.transform.preprocessing_fn",
        custom_config=config.transform_config())
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="beam_runners", pipeline_root=str(root / runner),
        components=[example_gen, schema, transform], enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(root / f"{runner}.db")),
        beam_pipeline_args=beam.pipeline_args(configs.BeamConfig(runner=runner, direct_num_workers=2))))
    return root / runner


def _records(run: pathlib.Path, component: str, output: str, split: str) -> list[bytes]:
    """The tf.Examples of one output split, sorted, each serialized canonically.

    Proto maps serialize in an order that may differ between processes, so what another
    worker wrote is compared after a deterministic re-serialization.
    """
    import tensorflow as tf

    files = glob.glob(str(run / component / output / "*" / f"Split-{split}" / "*.gz"))
    assert files, f"{run} has no {component} {output} of split {split}"
    return sorted(tf.train.Example.FromString(record.numpy()).SerializeToString(deterministic=True)
                  for record in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def _vocabularies(run: pathlib.Path) -> dict[str, bytes]:
    paths = glob.glob(str(run / "Transform" / "transform_graph" / "*" / "transform_fn" / "assets" / "*"))
    assert paths
    return {os.path.basename(path): pathlib.Path(path).read_bytes() for path in paths}


def test_multi_process_runner_writes_what_the_in_memory_runner_writes(tmp_path, monkeypatch):
    from enja.components import example_gen

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for span in range(SPANS):
        write_span(corpus, span, *real_pairs(span, PAIRS))
    write_dev(corpus, DEV_PAIRS)
    monkeypatch.setattr(example_gen, "CHUNK_LINES", CHUNK_LINES)

    in_memory = _through_transform(tmp_path, corpus, "in_memory")
    multi_process = _through_transform(tmp_path, corpus, "multi_process")

    assert len(_records(in_memory, "ParallelCorpusExampleGen", "examples", "train")) == SPANS * PAIRS
    for component, output in (("ParallelCorpusExampleGen", "examples"),
                              ("Transform", "transformed_examples")):
        for split in ("train", "eval"):
            assert (_records(multi_process, component, output, split)
                    == _records(in_memory, component, output, split)), (component, split)
    assert _vocabularies(multi_process) == _vocabularies(in_memory)
