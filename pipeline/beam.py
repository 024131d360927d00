"""Beam's pipeline arguments for the runner the `beam` settings name.

Every runner of the pipeline (the local one, Kubeflow's) passes `pipeline_args(config.beam)`
to `create_pipeline`, so one setting means the same Beam arguments wherever the pipeline
runs, and each choice's requirements are checked here, once.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from enja.pipeline.configs import BeamConfig

# How the job server of the flink and spark choices starts SDK workers (Beam's names).
ENVIRONMENT_TYPES = ("DOCKER", "PROCESS", "EXTERNAL", "LOOPBACK")


def _require(beam: BeamConfig, *names: str, because: str = "") -> None:
    """Fails naming every setting among `names` that is empty."""
    missing = [f"beam.{name}" for name in names if not getattr(beam, name)]
    if missing:
        reason = because or f"beam.runner={beam.runner}"
        raise ValueError(f"{reason} needs {', '.join(missing)} to be set")


def _in_memory(_beam: BeamConfig) -> list[str]:
    return ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _multi_process(beam: BeamConfig) -> list[str]:
    if beam.direct_num_workers < 0:
        raise ValueError(f"beam.direct_num_workers is {beam.direct_num_workers}; it takes 0 "
                         "(one worker per CPU core) or more")
    return ["--direct_running_mode=multi_processing",
            f"--direct_num_workers={beam.direct_num_workers}"]


def _dataflow(beam: BeamConfig) -> list[str]:
    _require(beam, "project", "region", "temp_location", "sdk_container_image")
    return ["--runner=DataflowRunner", f"--project={beam.project}", f"--region={beam.region}",
            f"--temp_location={beam.temp_location}",
            f"--sdk_container_image={beam.sdk_container_image}"]


def _portable(beam: BeamConfig) -> list[str]:
    """Flink and Spark alike: the job server behind `job_endpoint` decides which it is."""
    _require(beam, "job_endpoint")
    if beam.environment_type not in ENVIRONMENT_TYPES:
        raise ValueError(f"beam.environment_type is {beam.environment_type!r}; choose one of "
                         f"{', '.join(ENVIRONMENT_TYPES)}")
    args = ["--runner=PortableRunner", f"--job_endpoint={beam.job_endpoint}",
            f"--environment_type={beam.environment_type}"]
    if beam.environment_type != "LOOPBACK":
        _require(beam, "environment_config", because=f"beam.runner={beam.runner} with "
                                                     f"beam.environment_type={beam.environment_type}")
        args.append(f"--environment_config={beam.environment_config}")
    return args


_RUNNER_ARGS: dict[str, Callable[[BeamConfig], list[str]]] = {
    "in_memory": _in_memory,
    "multi_process": _multi_process,
    "dataflow": _dataflow,
    "flink": _portable,
    "spark": _portable,
}
# The choices of `beam.runner`.
RUNNERS = tuple(_RUNNER_ARGS)


def pipeline_args(beam: BeamConfig) -> list[str]:
    """Beam's arguments for `beam.runner`; a ValueError names a bad or missing setting."""
    if beam.runner not in _RUNNER_ARGS:
        raise ValueError(f"beam.runner is {beam.runner!r}; choose one of {', '.join(RUNNERS)}")
    return _RUNNER_ARGS[beam.runner](beam)
