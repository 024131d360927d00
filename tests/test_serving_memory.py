"""A swapped-out version is let go, so that its memory can go back to the operating system.

The memory itself is measured by bench/serving_swap_memory.py (resident size over 20 swaps, with a
threshold); here a real server swaps versions under real requests, and the old version's
LoadedModel must be gone afterwards: anything that kept a reference (the batcher, the metrics,
a request) would hold its graph and session for good.
"""
import os
import shutil
import weakref

import grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from enja.serving.server import ModelServer, ServerOptions
from support.serving import LIMITS, MODEL, SENTENCES, copy_version, eventually, text_request

OPTIONS = ServerOptions(port=0, poll_interval_s=0.1, limits=LIMITS)


def test_a_swapped_out_version_is_let_go(standin_model_base, tmp_path):
    base = shutil.copytree(standin_model_base, tmp_path / "base")
    model_dir = os.path.join(base, MODEL)
    server = ModelServer(str(base), MODEL, OPTIONS)
    server.start()
    try:
        first = weakref.ref(server.versions.get())
        with grpc.insecure_channel(server.address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(3):
                stub.Predict(text_request(SENTENCES), timeout=10)
            copy_version(model_dir, 1, 2)
            eventually(lambda: server.versions.available_versions() == [2], what="version 2 alone")
            assert stub.Predict(text_request(SENTENCES), timeout=10).model_spec.version.value == 2
        eventually(lambda: first() is None, what="version 1 let go")  # the next polls release it
    finally:
        server.stop()
