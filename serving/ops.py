"""Which ops a SavedModel needs, and whether stock TF Serving has them.

The TF Serving binary links only core TensorFlow ops; a graph that uses
tensorflow-text, sentencepiece or any other `load_op_library` op loads fine in
Python but fails in the model server. Checking the graph up front turns that
deployment-time failure into a test failure.
"""
import os

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry


def graph_ops(saved_model_dir: str) -> set[str]:
    """Op types used by every MetaGraph, including the bodies of library functions.

    Nodes that call a library function by name are function calls, not ops.
    """
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    ops: set[str] = set()
    for meta_graph in saved_model.meta_graphs:
        library = meta_graph.graph_def.library
        functions = {function.signature.name for function in library.function}
        nodes = list(meta_graph.graph_def.node)
        for function in library.function:
            nodes.extend(function.node_def)
        ops.update(node.op for node in nodes if node.op not in functions)
    return ops


def is_core_op(op: str) -> bool:
    """Registered in this process *and* exposed by core TF's generated `tf.raw_ops`.

    The registry alone is not enough: importing tensorflow-text (or any op
    library) registers its ops too, and the pip package also registers test,
    TPU, TensorRT and XLA-internal ops that a CPU model server may lack. None
    of those reach `tf.raw_ops`, which is built from TensorFlow's own op
    wrappers, so the check errs on the strict side.
    """
    return op_def_registry.get(op) is not None and hasattr(tf.raw_ops, op)


def non_core_ops(saved_model_dir: str) -> set[str]:
    """Ops in the SavedModel that stock TF Serving would not know."""
    return {op for op in graph_ops(saved_model_dir) if not is_core_op(op)}


def check_core_ops(saved_model_dir: str) -> None:
    """Raise if the SavedModel needs ops outside core TensorFlow."""
    missing = non_core_ops(saved_model_dir)
    if missing:
        raise ValueError(
            f"{saved_model_dir} uses ops that stock TF Serving lacks: {', '.join(sorted(missing))}"
        )
