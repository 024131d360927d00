"""ExampleGen → StatisticsGen → Transform on each local Beam runner: seconds per component.

    ENJA_DATA_ROOT=CORPUS_DIR .venv/bin/python bench/beam_runners.py \
        [--runners in_memory multi_process dask] [--workers 2] [--output-dir bench_output/beam_runners]

CORPUS_DIR is the small_parallel_enja corpus with its spans (`enja download-data --dest CORPUS_DIR`
makes one). Runs the real pipeline (`create_pipeline`, default preset: all five spans and dev) cut
after Transform — ExampleGen, StatisticsGen, ImportSchemaGen, DataGate, Transform; no
training — once per runner, uncached, each in its own folder
under --output-dir. `multi_process` runs --workers DirectRunner worker processes; `dask`
runs Beam's DaskRunner (not a `beam.runner` choice: see BeamConfig) on a local
dask.distributed cluster of --workers single-threaded worker processes, started here and
handed to Beam by its address. Prints the wall time of each run, each
component's state and seconds from ML Metadata, and the examples each run wrote per split
(a runner that finishes but writes less is not a runner the pipeline can use). The runs
share one process, in the order given. Each run's DataGate finds no reference of its own
(a fresh state folder), so it checks the schema alone.
"""
from __future__ import annotations

import argparse
import contextlib
import glob
import os
import time
from collections.abc import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.orchestration import metadata

from enja.pipeline import beam, configs, data, local_runner
from enja.pipeline.pipeline import create_pipeline

THROUGH_TRANSFORM = ("ParallelCorpusExampleGen", "StatisticsGen", "ImportSchemaGen", "DataGate",
                     "Transform")
# What each run wrote, counted per split: (component, output).
OUTPUTS = (("ParallelCorpusExampleGen", "examples"), ("Transform", "transformed_examples"))


def through_transform(pipeline: tfx.dsl.Pipeline) -> tfx.dsl.Pipeline:
    """The pipeline's components up to Transform, uncached; the later ones are cut off."""
    kept = [component for component in pipeline.components if component.id in THROUGH_TRANSFORM]
    for component in kept:
        for downstream in list(component.downstream_nodes):
            if downstream not in kept:
                component.remove_downstream_node(downstream)
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline.pipeline_info.pipeline_name,
        pipeline_root=pipeline.pipeline_info.pipeline_root, components=kept, enable_cache=False,
        metadata_connection_config=pipeline.metadata_connection_config,
        beam_pipeline_args=pipeline.beam_pipeline_args)


def run(config: configs.PipelineConfig, output_dir: str, beam_pipeline_args: list[str]) -> None:
    layout = local_runner.OutputLayout(output_dir, config)
    os.makedirs(os.path.dirname(layout.metadata_path))
    tfx.orchestration.LocalDagRunner().run(through_transform(create_pipeline(
        config, data_root=data.resolve_data_root(None), pipeline_root=layout.pipeline_root,
        serving_model_dir=layout.serving_model_dir, state_dir=layout.state_dir,
        metadata_connection_config=layout.metadata_connection(),
        beam_pipeline_args=beam_pipeline_args)))


def component_seconds(output_dir: str, config: configs.PipelineConfig) -> list[tuple[str, str, float]]:
    """(component, final state, seconds) of every execution the run recorded, in start order."""
    connection = local_runner.OutputLayout(output_dir, config).metadata_connection()
    with metadata.Metadata(connection) as store:
        executions = sorted(store.store.get_executions(), key=lambda e: e.create_time_since_epoch)
        types = {t.id: t.name for t in store.store.get_execution_types()}
    return [(types[e.type_id].rsplit(".", 1)[-1],
             metadata_store_pb2.Execution.State.Name(e.last_known_state),
             (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000) for e in executions]


def records_per_split(output_dir: str, config: configs.PipelineConfig, component: str,
                      output: str) -> dict[str, int]:
    """Records written per split of the run's newest execution of `component`, {} if none."""
    parent = os.path.join(local_runner.OutputLayout(output_dir, config).pipeline_root, component, output)
    counts = {}
    for split_dir in sorted(glob.glob(os.path.join(parent, "*", "Split-*"))):
        files = glob.glob(os.path.join(split_dir, "*.gz"))
        counts[os.path.basename(split_dir)[len("Split-"):]] = sum(
            1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP")) if files else 0
    return counts


@contextlib.contextmanager
def runner_args(runner: str, workers: int) -> Iterator[list[str]]:
    """Beam's arguments for a runner; for dask, with a local cluster that lives as long as the block."""
    if runner != "dask":
        yield beam.pipeline_args(configs.BeamConfig(runner=runner, direct_num_workers=workers))
        return
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        yield ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner",
               f"--dask_client_address={cluster.scheduler_address}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", nargs="+", default=["in_memory", "multi_process", "dask"],
                        choices=["in_memory", "multi_process", "dask"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output-dir", default="bench_output/beam_runners")
    args = parser.parse_args()
    if os.path.exists(args.output_dir):
        parser.error(f"{args.output_dir} exists: remove it first")

    config = configs.PRESETS["default"]
    for runner in args.runners:
        output_dir = os.path.join(args.output_dir, runner)
        with runner_args(runner, args.workers) as beam_pipeline_args:
            print(f"== {runner}: {' '.join(beam_pipeline_args)}", flush=True)
            start = time.monotonic()
            try:
                run(config, output_dir, beam_pipeline_args)
                outcome = "completed"
            except Exception as error:  # pylint: disable=broad-except
                outcome = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:300]}"
            print(f"{runner}: {outcome} in {time.monotonic() - start:.0f} s wall")
        print("| component | state | seconds |")
        print("|---|---|---|")
        for component, state, seconds in component_seconds(output_dir, config):
            print(f"| {component} | {state} | {seconds:.1f} |")
        for component, output in OUTPUTS:
            print(f"{component} {output}: {records_per_split(output_dir, config, component, output)}")


if __name__ == "__main__":
    main()
