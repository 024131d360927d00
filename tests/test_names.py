"""components/names.py spells TFX's names for readers that do not import TFX: each must be
what TFX writes, and the pipeline's node ids must be the ones it names."""
from __future__ import annotations

import grpc
from ml_metadata.proto import metadata_store_pb2
from tfx.components.evaluator import constants as evaluator_constants
from tfx.components.infra_validator import executor as infra_validator_executor
from tfx.components.pusher import executor as pusher_executor
from tfx.orchestration.portable.mlmd import execution_lib
from tfx.types import standard_artifacts, standard_component_specs

from enja.components import data_gate, names
from enja.pipeline import configs, pipeline
from enja.pipeline.operations import history, lineage


def test_channels_are_tfxs():
    specs = standard_component_specs
    assert (names.EXAMPLES, names.ANOMALIES, names.MODEL, names.MODEL_RUN, names.BASE_MODEL,
            names.EVALUATION, names.BLESSING, names.PUSHED_MODEL) == (
        specs.EXAMPLES_KEY, specs.ANOMALIES_KEY, specs.MODEL_KEY, specs.MODEL_RUN_KEY,
        specs.BASE_MODEL_KEY, specs.EVALUATION_KEY, specs.BLESSING_KEY, specs.PUSHED_MODEL_KEY)


def test_properties_are_the_ones_tfx_writes_and_reads():
    assert names.BLESSED == evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY
    assert names.BLESSED == infra_validator_executor._BLESSED_KEY  # what Pusher reads of InfraCheck
    assert (names.PUSHED, names.PUSHED_VERSION) == (pusher_executor._PUSHED_KEY,
                                                     pusher_executor._PUSHED_VERSION_KEY)
    assert names.PUSHED_MODEL_TYPE == standard_artifacts.PushedModel.TYPE_NAME
    assert names.EXECUTION_RESULT == execution_lib._EXECUTION_RESULT
    assert grpc.StatusCode.FAILED_PRECONDITION.value[0] == names.DATA_GATE_STOPPED_CODE


def test_the_pipelines_node_ids_are_the_named_ones(tmp_path):
    built = pipeline.create_pipeline(
        configs.PRESETS["smoke"], data_root=str(tmp_path), pipeline_root=str(tmp_path / "root"),
        serving_model_dir=str(tmp_path / "serving"), state_dir=str(tmp_path / "state"),
        metadata_connection_config=None, beam_pipeline_args=[])
    assert {component.id for component in built.components} == {
        names.EXAMPLE_GEN, names.STATISTICS_GEN, names.SCHEMA_IMPORTER, names.DATA_GATE,
        names.PRODUCTION_MODEL, names.TRANSFORM, names.TRAINER, names.SERVING_EXPORT,
        names.EVALUATOR, names.INFRA_CHECK, names.PUSHER}


def test_a_stopped_gates_result_is_read_as_tfx_stores_it():
    """The DataGate's result, stored by TFX's own code, read back by the TFX-free lineage."""
    execution = metadata_store_pb2.Execution()
    execution_lib.set_execution_result(data_gate.stopped(["span 2: one", "span 2: two"]).execution_result,
                                       execution)
    gate = lineage.NodeRun(names.DATA_GATE, execution, {}, {})
    assert gate.execution_result() == (names.DATA_GATE_STOPPED_CODE, "span 2: one\nspan 2: two")
    assert history.data_problems(gate) == ["span 2: one", "span 2: two"]
