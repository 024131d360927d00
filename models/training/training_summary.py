"""What a training run did and how fast, saved beside its TensorBoard logs.

Users read it to see which epoch was kept; bench/quality.py and bench/train_speed.py
read it to compare the pipeline's Trainer with a plain Keras loop; lineage history and
reports read how the run started. training_summary.json holds:

    epochs_run, kept_epoch   epochs trained, and the one whose weights were kept (1-based)
    loss, val_loss           per epoch
    val_bleu                 greedy dev BLEU per epoch (models/training/epoch_bleu.py)
    epoch_train_seconds      training seconds at the end of each epoch, summed from the start
    train_seconds            time in training batches, validation passes left out
    tokens_per_epoch         non-padding source tokens plus target labels
    tokens_per_second        tokens_per_epoch * epochs_run / train_seconds
    start                    warm or cold start, why, from which base model, and how many
                             tokens per side were carried over or new (models/training/warm_start.py)
"""
from __future__ import annotations

import json
import os
from typing import Any

SUMMARY_FILE = "training_summary.json"
# How a run's training started (`start.mode`): trained from the model in production's weights,
# from scratch, or not at all, its base model's weights kept (models/training/warm_start.py).
WARM, COLD, REUSED = "warm", "cold", "reused"


def _is_remote(path: str) -> bool:
    return "://" in path


def write(summary: dict[str, Any], model_run_dir: str) -> None:
    text = json.dumps(summary, indent=2)
    path = os.path.join(model_run_dir, SUMMARY_FILE)
    if _is_remote(model_run_dir):  # a bucket, on Kubeflow: TensorFlow's file systems reach it
        import tensorflow as tf

        tf.io.gfile.makedirs(model_run_dir)
        with tf.io.gfile.GFile(path, "w") as out:
            out.write(text)
        return
    os.makedirs(model_run_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        out.write(text)


def read(model_run_dir: str) -> dict[str, Any]:
    """The summary; local runs' readers (`enja history`) need no TensorFlow for it."""
    path = os.path.join(model_run_dir, SUMMARY_FILE)
    if _is_remote(model_run_dir):
        import tensorflow as tf

        with tf.io.gfile.GFile(path) as summary:
            return json.load(summary)
    with open(path, encoding="utf-8") as summary:
        return json.load(summary)
