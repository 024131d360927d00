"""Translates with an exported SavedModel using TensorFlow alone, as TF Serving would.

Run as a script by test_export.py: it blocks every `enja` import, so a model that
needs project code to load or run fails here. Prints one JSON object.
"""
import json
import sys

sys.modules["enja"] = None  # `import enja...` now raises ImportError

import tensorflow as tf  # noqa: E402


def translate_with_tf2_loader(export_dir: str, sentences: list[str]) -> list[str]:
    signature = tf.saved_model.load(export_dir).signatures["serving_default"]
    return [t.decode() for t in signature(text=tf.constant(sentences))["translations"].numpy()]


def translate_with_tf1_session(export_dir: str, sentences: list[str]) -> dict:
    """The TF1 loader TF Serving's C++ server and BulkInferrer use, run by tensor names."""
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
        signature = meta_graph.signature_def["serving_default"]
        fetches = {name: info.name for name, info in signature.outputs.items()}
        results = session.run(fetches, {signature.inputs["text"].name: sentences})
    return {"translations": [t.decode() for t in results["translations"]],
            "scores": [float(s) for s in results["scores"]]}


if __name__ == "__main__":
    export_dir, sentences = sys.argv[1], sys.argv[2:]
    print(json.dumps({
        "tf2": translate_with_tf2_loader(export_dir, sentences),
        "tf1": translate_with_tf1_session(export_dir, sentences),
    }, ensure_ascii=False))
