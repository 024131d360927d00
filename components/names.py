"""The names a run is recorded under in ML Metadata: one home for writers and readers.

The components write them; `enja history`, `report`, `rollback` and the lineage queries
(pipeline/operations/) read them back. TFX's own names that those readers need (its
components' ids and channels, the properties its Pusher and Evaluator set) are spelled here
too, so that reading a run imports neither TFX nor TensorFlow; tests/test_names.py checks
them against TFX.
"""
from __future__ import annotations

# Node ids: each component's id in the pipeline (create_pipeline sets them), in pipeline order.
SCHEMA_IMPORTER = "ImportSchemaGen"
EXAMPLE_GEN = "ParallelCorpusExampleGen"
STATISTICS_GEN = "StatisticsGen"
DATA_GATE = "DataGate"
PRODUCTION_MODEL = "ProductionModel"
TRANSFORM = "Transform"
TRAINER = "Trainer"
SERVING_EXPORT = "ServingExport"
EVALUATOR = "Evaluator"
INFRA_CHECK = "InfraCheck"
PUSHER = "Pusher"

# Channels: the keys of the components' inputs and outputs that the readers follow.
EXAMPLES = "examples"
ANOMALIES = "anomalies"
MODEL = "model"  # Trainer's trained state, ServingExport's and ProductionModel's SavedModel
MODEL_RUN = "model_run"  # Trainer: its TensorBoard logs and training summary
BASE_MODEL = "base_model"  # Trainer: the model in production it may warm-start from
TRAINED_MODEL = "trained_model"  # ServingExport: the Trainer's model it exports
EVALUATION = "evaluation"
BLESSING = "blessing"  # Evaluator's ModelBlessing, InfraCheck's InfraBlessing
PUSHED_MODEL = "pushed_model"

# Artifact custom properties.
SPANS = "spans"  # Examples (JSON): the training spans read, oldest first
FILE_PAIRS = "file_pairs"  # Examples (JSON): per file pair read, its split, span, paths and pairs
DROPPED_EMPTY_PAIRS = "dropped_empty_pairs"  # Examples: pairs with an empty side, left out
REFERENCE_SPANS = "reference_spans"  # a passing DataGate's anomalies (JSON): the drift reference
IN_PRODUCTION = "in_production"  # ProductionModel's model: 1 if a model is served, else 0
SERVED_VERSION = "served_version"  # ProductionModel's model: the version served
CANDIDATE_BLEU = "candidate_bleu"  # Evaluator's evaluation: dev BLEU of the candidate
BASELINE_BLEU = "baseline_bleu"  # … and of the model in production, when there is one
BLEU_BY_LENGTH = "bleu_by_length"  # … (JSON): {"candidate"|"baseline": {length bucket: BLEU}}
NOT_BLESSED_REASON = "not_blessed_reason"  # … the failed thresholds in words, or ""
BLESSED = "blessed"  # ModelBlessing and InfraBlessing: 1 or 0 (TFX reads it for InfraBlessing)
REASON = "reason"  # InfraBlessing: what was checked, or the first thing that failed
PUSHED = "pushed"  # TFX's Pusher, on PushedModel: 1 or 0
PUSHED_VERSION = "pushed_version"  # TFX's Pusher, on PushedModel: the version folder's name

PUSHED_MODEL_TYPE = "PushedModel"

# Where TFX keeps an executor's ExecutionResult (JSON) on its execution, and the code with
# which a DataGate that found anomalies ends the run (its message: one anomaly a line).
EXECUTION_RESULT = "__execution_result__"
DATA_GATE_STOPPED_CODE = 9  # gRPC's FAILED_PRECONDITION: TFX's result codes are gRPC's

# `enja rollback`, recorded as an execution of its own in the pipeline's context.
ROLLBACK_TYPE = "enja.Rollback"
TO_VERSION, FROM_VERSION, UNDO = "to_version", "from_version", "undo"
