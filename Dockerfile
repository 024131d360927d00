# The image every component of the Kubeflow pipeline runs in (docs/kubeflow.md): TFX 1.16's
# own image, this project's locked dependencies, and the enja package installed (not
# editable), so that TFX's container entrypoint imports enja's executors and ImportSchemaGen
# reads the reviewed schema the installed package ships.
#
# NOT BUILT HERE: the development machine has no container engine. What was verified here
# is the compiled spec and its container commands run outside a container (tests/test_kubeflow_v2.py).
#   docker build -t REGISTRY/enja-nmt:TAG . && docker push REGISTRY/enja-nmt:TAG
FROM gcr.io/tfx-oss-public/tfx:1.16.0

# requirements.lock is resolved for Python 3.10 (`make lock`), the Python of TFX 1.16's image.
RUN python -c "import sys; assert sys.version_info[:2] == (3, 10), 'the lock needs Python 3.10, not ' + sys.version"

WORKDIR /build
COPY requirements.lock ./
RUN python -m pip install --no-cache-dir -r requirements.lock

COPY setup.py ./
COPY components components
COPY models models
COPY pipeline pipeline
COPY preprocessing preprocessing
COPY serving serving
RUN python -m pip install --no-cache-dir --no-deps . && rm -rf /build

# Compiled specs name the schema by the path enja.pipeline.kubeflow_v2_runner expects in this
# image; fail the build here rather than ImportSchemaGen on a cluster if the layout differs.
WORKDIR /
RUN python -c "from enja.pipeline import kubeflow_v2_runner as k, pipeline as p; \
assert p.SCHEMA_FILE == k.IMAGE_SCHEMA_FILE, (p.SCHEMA_FILE, k.IMAGE_SCHEMA_FILE); open(p.SCHEMA_FILE).close()"
