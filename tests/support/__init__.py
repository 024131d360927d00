"""Helpers the tests share, one job a module, so that no test module is imported as a library.

corpus          the tiny made-up pairs, their vocabulary settings, Transform output written from pairs,
                spans of the real corpus (and spoiled ones), Beam run in this process
tiny_models     the settings of conftest's tiny models and the fit that makes them memorise the pairs
serving         talking to a model server: names, sentences, limits, requests, versions, waiting,
                model config text, clients under load
deploy          the TF Serving recipes in serving/deploy/, parsed
paths           where the checkout and these helpers are
kfp_launcher    runs a compiled PipelineSpec's tasks as open-source Kubeflow Pipelines' backend does
load_exported_model  a script: translates with a SavedModel and TensorFlow alone (no `enja` import)
"""
