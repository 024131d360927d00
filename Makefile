# Set-up and everyday commands. `make run` and `make test` are the README's two commands.

PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
ENJA := $(VENV)/bin/enja
PRESET ?= default
OUTPUT_DIR ?= pipeline_output
PORT ?= 8500
REST_API_PORT ?= 8501
# The corpus: $ENJA_DATA_ROOT if set, else the shared copy beside the checkout, else data/.
ENJA_DATA_ROOT ?= $(firstword $(wildcard ../shared/data/small_parallel_enja) data/small_parallel_enja)
export ENJA_DATA_ROOT
DEMO_SENTENCES := "i like cats ." "where is the station ?" "he gave me a book yesterday ."

.PHONY: install run data serve stop test lint lock clean

# The virtual environment, from the lock file; remade when the lock or setup.py changes.
$(VENV)/installed: requirements.lock setup.py .python-version
	$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) venv --quiet --allow-existing --python 3.10 $(VENV)
	$(UV) pip install --quiet --python $(VENV)/bin/python -r requirements.lock
	$(UV) pip install --quiet --python $(VENV)/bin/python --no-deps -e .
	touch $@

install: $(VENV)/installed

# Downloads the public corpus when no local copy exists.
data: install
	@test -f "$(ENJA_DATA_ROOT)/train.en" || $(ENJA) download-data --dest "$(ENJA_DATA_ROOT)"

# The main job: the pipeline pushes a model, the local server serves it, a client translates.
run: data
	$(ENJA) run --preset $(PRESET) --output-dir $(OUTPUT_DIR)
	@$(MAKE) --no-print-directory serve
	$(ENJA) translate --server 127.0.0.1:$(PORT) --wait 300 $(DEMO_SENTENCES)
	@echo "Serving gRPC on 127.0.0.1:$(PORT), REST on 127.0.0.1:$(REST_API_PORT): try 'echo \"i like dogs .\" | $(ENJA) translate'"
	@echo "or: curl -d '{\"instances\": [\"i like dogs .\"]}' 127.0.0.1:$(REST_API_PORT)/v1/models/enja:predict; 'make stop' ends it."

# (Re)starts the local TF Serving-compatible server in the background, on the model config file
# `enja run` writes (it follows new pushes; `enja rollback` edits it).
serve: stop
	nohup $(ENJA) serve --model_config_file $(OUTPUT_DIR)/models.config \
		--model_config_file_poll_wait_seconds 1 --port $(PORT) --rest_api_port $(REST_API_PORT) \
		--enable_batching \
		> $(OUTPUT_DIR)/server.log 2>&1 & echo $$! > $(OUTPUT_DIR)/server.pid

# Signals only the `enja serve` the pid file names (a stale file may name another process now),
# then waits for it to drain and exit (a zombie has exited), so that a new server finds its ports free.
stop:
	@pid=$$(cat $(OUTPUT_DIR)/server.pid 2>/dev/null); \
	if [ -n "$$pid" ] && ps -p "$$pid" -o args= | grep -q "enja serve"; then \
		kill "$$pid"; \
		for i in $$(seq 150); do ps -p "$$pid" -o stat= | grep -qv Z || break; sleep 0.2; done; \
		if ps -p "$$pid" -o stat= | grep -qv Z; then echo "enja serve ($$pid) is still stopping" >&2; exit 1; fi; \
	fi; rm -f $(OUTPUT_DIR)/server.pid

test: data
	$(VENV)/bin/python -m pytest

# ruff, with the rules in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check .

# Re-resolves requirements.in into requirements.lock.
lock:
	$(UV) pip compile --quiet --python 3.10 requirements.in -o requirements.lock

clean: stop
	rm -rf $(OUTPUT_DIR)
