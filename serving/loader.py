"""Loading a SavedModel version the way TF Serving does.

TF Serving never calls Python: it loads the MetaGraph tagged "serve" into a
session, then feeds and fetches the tensors a SignatureDef names. Doing the
same here (not `tf.saved_model.load`) means a model that only works through
Python's object graph fails in this server too.
"""
import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from enja.serving import request as request_lib
from enja.serving import warmup
from enja.serving.config import RequestLimits
from enja.serving.errors import ServingError


class LoadedModel:
    """One version of a model in its own graph and session (thread-safe to run)."""

    def __init__(self, path: str, version: int, intra_op_threads: int = 0, inter_op_threads: int = 0) -> None:
        """Thread counts as TF Serving's --tensorflow_intra_op_parallelism and
        --tensorflow_inter_op_parallelism: 0 lets TensorFlow choose (a thread a core each);
        TensorFlow keeps the first session's pools for the process."""
        self.path = path
        self.version = version
        graph = tf.Graph()
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=intra_op_threads,
                                          inter_op_parallelism_threads=inter_op_threads)
        self._session = tf.compat.v1.Session(graph=graph, config=config)
        with graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(self._session, [tf.saved_model.SERVING], path)
        self.signatures: dict[str, meta_graph_pb2.SignatureDef] = dict(meta_graph.signature_def)

    def signature(self, name: str) -> meta_graph_pb2.SignatureDef:
        if name not in self.signatures:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature name: "{name}" not found in signature def')
        return self.signatures[name]

    def run(self, signature_name: str, inputs: dict[str, np.ndarray],
            output_keys: tuple[str, ...], timeout_s: float | None = None) -> dict[str, np.ndarray]:
        """Run a signature by tensor names, cancelled after `timeout_s` as TF Serving bounds a run
        by the request's deadline; TF errors keep their status code."""
        signature = self.signature(signature_name)
        feeds = {signature.inputs[alias].name: array for alias, array in inputs.items()}
        fetches = {key: signature.outputs[key].name for key in output_keys}
        options = (None if timeout_s is None
                   else tf.compat.v1.RunOptions(timeout_in_ms=max(1, int(timeout_s * 1000))))
        try:
            return self._session.run(fetches, feeds, options=options)
        except tf.errors.OpError as error:
            raise ServingError.from_tf(error) from error

    def warm_up(self, limits: RequestLimits) -> int:
        """Replay the stored warm-up requests; any failure fails the load. Returns how many ran."""
        count = 0
        for log in warmup.read_warmup_requests(self.path):
            if not log.HasField("predict_log"):
                raise ValueError(f"unsupported warm-up record {log.WhichOneof('log_type')} in {self.path}")
            request = log.predict_log.request
            signature_name = (request.model_spec.signature_name
                              or tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY)
            parsed = request_lib.parse_predict(request, self.signature(signature_name), limits)
            self.run(signature_name, parsed.inputs, parsed.output_keys)
            count += 1
        return count

