"""Warm-up requests stored with a SavedModel, as TF Serving expects them.

TF Serving replays `assets.extra/tf_serving_warmup_requests` before it marks a
version available, so the first real request does not pay for lazy
initialisation; the local server does the same.
"""
import os
from collections.abc import Iterator, Sequence

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from enja.serving.predict_api import predict_request

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def write_warmup_requests(saved_model_dir: str, sentences: Sequence[str], model_name: str) -> str:
    """Store one single-sentence and one full-batch request; return the file's path.

    Both shapes matter: a batch of one and a batch of many take different
    code paths (and, with batching on, different padded sizes).
    """
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    batches = [list(sentences[:1]), list(sentences)] if len(sentences) > 1 else [list(sentences)]
    with tf.io.TFRecordWriter(path) as writer:
        for batch in batches:
            log = prediction_log_pb2.PredictionLog()
            log.predict_log.request.CopyFrom(predict_request(batch, model_name))
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(saved_model_dir: str) -> Iterator[prediction_log_pb2.PredictionLog]:
    """The stored warm-up records, or none if the model has no warm-up file."""
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return
    for record in tf.compat.v1.io.tf_record_iterator(path):
        yield prediction_log_pb2.PredictionLog.FromString(record)
