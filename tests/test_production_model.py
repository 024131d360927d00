"""ProductionModel reads what servers serve: the newest version, or the one the config file pins."""
from __future__ import annotations

import os
import pathlib

from tfx.types import standard_artifacts

from enja.components import external_state, names, production_model
from enja.pipeline import cli
from enja.serving import model_config

NAME = "enja"


def _push(versions_dir: str, version: int) -> None:
    """A stand-in pushed version: a SavedModel file and the state the export keeps in assets.extra."""
    folder = os.path.join(versions_dir, str(version))
    os.makedirs(os.path.join(folder, "assets.extra", "warm_start"))
    with open(os.path.join(folder, "saved_model.pb"), "w", encoding="utf-8") as out:
        out.write(f"version {version}")
    with open(os.path.join(folder, "assets.extra", "warm_start", "state.json"), "w",
              encoding="utf-8") as out:
        out.write("{}")


def _run(exec_properties: dict, uri: str) -> standard_artifacts.Model:
    output = standard_artifacts.Model()
    output.uri = uri
    production_model.Executor().Do({}, {production_model.MODEL_KEY: [output]}, exec_properties)
    return output


def test_the_served_version_is_copied_and_a_rollback_changes_it_and_the_cache_key(tmp_path):
    versions_dir = str(tmp_path / "serving_model" / NAME)
    config_file = str(tmp_path / "models.config")
    model_config.write_initial_model_config(config_file, NAME, versions_dir)
    properties = dict(production_model.ProductionModel(
        serving_model_dir=versions_dir, model_name=NAME, model_config_file=config_file).exec_properties)
    driver = production_model.Driver.__new__(production_model.Driver)  # run() needs no metadata

    def fingerprint() -> str:
        info = type("ExecutionInfo", (), {"exec_properties": properties})()
        return driver.run(info).exec_properties[external_state.FINGERPRINT_KEY].string_value

    empty = _run(properties, str(tmp_path / "out0"))
    assert not production_model.holds_model(empty)
    assert not os.path.exists(os.path.join(empty.uri, "Format-Serving"))
    nothing = fingerprint()

    _push(versions_dir, 1)
    _push(versions_dir, 2)
    newest = fingerprint()
    latest = _run(properties, str(tmp_path / "out1"))
    assert production_model.holds_model(latest)
    assert latest.get_int_custom_property(names.SERVED_VERSION) == 2
    served = os.path.join(latest.uri, "Format-Serving")
    assert pathlib.Path(served, "saved_model.pb").read_text(encoding="utf-8") == "version 2"
    assert os.path.exists(os.path.join(served, "assets.extra", "warm_start", "state.json"))

    # A rollback of runs made elsewhere (Kubeflow): no local ML Metadata, only the files.
    rollback = ["rollback", "--output-dir", str(tmp_path / "no_runs_here"), "--serving-dir",
                versions_dir, "--model-config-file", config_file]
    assert cli.main([*rollback, "--to", "1"]) == 0
    rolled_back = _run(properties, str(tmp_path / "out2"))
    assert rolled_back.get_int_custom_property(names.SERVED_VERSION) == 1
    assert len({nothing, newest, fingerprint()}) == 3

    assert cli.main([*rollback, "--latest"]) == 0
    assert production_model.find_served(versions_dir, config_file, NAME).version == 2


def test_a_rollback_without_runs_or_to_a_missing_version_says_so(tmp_path, capsys):
    versions_dir = str(tmp_path / "serving_model" / NAME)
    config_file = str(tmp_path / "models.config")
    model_config.write_initial_model_config(config_file, NAME, versions_dir)
    _push(versions_dir, 1)
    before = pathlib.Path(config_file).read_text(encoding="utf-8")
    output_dir = ["--output-dir", str(tmp_path / "no_runs_here")]

    assert cli.main(["rollback", *output_dir, "--to", "1"]) == 2
    assert "no pipeline has run in" in capsys.readouterr().err
    assert cli.main(["rollback", *output_dir, "--to", "7", "--serving-dir", versions_dir,
                     "--model-config-file", config_file]) == 2
    error = capsys.readouterr().err
    assert error == f"enja rollback: version 7 is not in {versions_dir}\n"
    assert pathlib.Path(config_file).read_text(encoding="utf-8") == before
