"""Which `tf.distribute` strategy the Trainer trains under, and where each worker may write.

The environment decides, so the same `run_fn` runs on a laptop, on a machine with several
GPUs and on a cluster:

    TF_CONFIG names more than one task     MultiWorkerMirroredStrategy: one copy of the
    (chief and workers)                    model per worker, gradients all-reduced
    several GPUs on this machine           MirroredStrategy over them
    otherwise                              the default strategy: one device, as before

Every worker of a cluster runs the whole `run_fn` with the same output paths, but only
the chief may write them: the others would overwrite its files or leave partial ones
beside them. Saving a model can read variables through collective ops that every worker
must join, so the others save too, into a temporary directory that is removed afterwards
(as TensorFlow's multi-worker guide recommends).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import tensorflow as tf

# The TF_CONFIG jobs whose tasks train; a task of any other job (an evaluator) does not.
_TRAINING_JOBS = ("chief", "worker")


def _training_tasks(cluster: tf.train.ClusterSpec) -> int:
    return sum(cluster.num_tasks(job) for job in _TRAINING_JOBS if job in cluster.jobs)


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """MultiWorkerMirroredStrategy whose `reduce` takes what Keras 3 (3.12) hands it.

    Keras reduces a whole (inputs, labels) batch in one call to learn its shapes before
    it fits or evaluates, and each step's scalar metrics along axis 0; the stock
    strategy rejects both (keras-team/keras#20329, #20585). Here each tensor of a nest is
    reduced on its own, along `axis` only if it has axes.
    """

    def reduce(self, reduce_op: Any, value: Any, axis: int | None = None) -> Any:
        reduce_one = super().reduce

        def reduce_tensor(tensor: Any) -> Any:
            scalar = self.experimental_local_results(tensor)[0].shape.rank == 0
            return reduce_one(reduce_op, tensor, None if scalar else axis)

        return tf.nest.map_structure(reduce_tensor, value)


def strategy_from_environment() -> tf.distribute.Strategy:
    """The strategy for this process: several workers, several local GPUs, or one device.

    Call it before any other TensorFlow op: MultiWorkerMirroredStrategy sets up the
    collective ops of the TensorFlow runtime, which ops already run may not see.
    """
    cluster = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec()
    if _training_tasks(cluster) > 1:
        return _MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the outputs: the `chief` task, or worker 0 of a cluster
    without one (TensorFlow's convention); always outside a cluster."""
    resolver = strategy.cluster_resolver
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    return (resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().jobs)


@contextlib.contextmanager
def worker_dir(path: str, strategy: tf.distribute.Strategy) -> Iterator[str]:
    """`path` on the chief; on any other worker a temporary directory of the same base
    name, removed with everything in it on exit.

    Keeping the base name keeps what is written beside it (a Model artifact's
    `warm_start/` beside its `Format-Serving/`) inside the temporary directory too.
    """
    if is_chief(strategy):
        yield path
        return
    root = tempfile.mkdtemp(prefix="enja-worker-")
    try:
        yield os.path.join(root, os.path.basename(path.rstrip("/")))
    finally:
        shutil.rmtree(root)
