# Two commands set everything up on a fresh machine:
#   make serve   venv + the serving runtime (no PyTorch) + the demo model assembled from its
#                checkpoints, then serve it on 127.0.0.1:$(PORT)
#   make test    the same, plus PyTorch, the test tools and the system tools the tests need, then
#                every test (Python, JS, browser)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
HOST   ?= 127.0.0.1
REPO   := model_repository/moving-digits
DEMO   := models/checkpoints/demo
BUNDLE := $(DEMO)/onnx
CKPT   := $(wildcard $(DEMO)/*.safetensors $(DEMO)/*.json $(BUNDLE)/*)
DEV_EXTRAS := .[train,test]
SERVE_DEPS := $(VENV)/.serve-deps
DEV_DEPS   := $(VENV)/.dev-deps
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# `$(call step,what,command)`: say what a set-up step does, run it, say how long it took (no
# commas in either argument: they separate call arguments; put them in a variable).
step = @echo "==> $(1)"; t0=$$(date +%s); $(2) && echo "    done in $$(( $$(date +%s) - t0 )) s"

.PHONY: serve test install install-dev model bundle system-deps js-deps test-python test-js bench gpu-wheels clean

$(SERVE_DEPS): pyproject.toml
	$(call step,creating $(VENV) and installing the serving runtime (ONNX Runtime FastAPI ...; no PyTorch),\
	  (test -d $(VENV) || $(PYTHON) -m venv $(VENV)) && $(BIN)/pip install -q -e .)
	@touch $@

# Export, training, evaluation and the tests need PyTorch 2.13.0 (the CPU build on this team's
# machines) and the test tools; the server itself does not.
$(DEV_DEPS): $(SERVE_DEPS) pyproject.toml clients/python/pyproject.toml
	$(call step,installing PyTorch 2.13.0 and the training and test tools,\
	  $(BIN)/pip install -q torch==2.13.0 && $(BIN)/pip install -q -e '$(DEV_EXTRAS)' -e clients/python)
	@touch $@

install: $(SERVE_DEPS)
install-dev: $(DEV_DEPS)

# The served ONNX files: the committed weight-free graphs filled from the committed safetensors
# with numpy (`kinetoscope export assemble`: server/repository.py, no torch), checked against the
# manifest's sha256.
$(REPO)/manifest.json: $(CKPT) | $(SERVE_DEPS)
	$(call step,assembling the demo model repository $(REPO) from $(BUNDLE) and the checkpoints,\
	  $(BIN)/kinetoscope export assemble $(BUNDLE) $(DEMO) $(REPO))

model: $(REPO)/manifest.json

# After training: re-export the demo family and rewrite the bundle that `make model` assembles.
bundle: $(DEV_DEPS)
	$(BIN)/kinetoscope export bundle

serve: model
	@echo "==> serving $(REPO) on http://$(HOST):$(PORT)/"
	$(BIN)/kinetoscope serve --host $(HOST) --port $(PORT) --model-repository model_repository

# redis-server (Redis tests), Chromium (playground test), Node (JS SDK): installed with apt-get
# when running as root, else a clear message.
system-deps:
	@for pair in redis-server:redis-server chromium:chromium node:nodejs npm:npm; do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  if ! command -v $$cmd >/dev/null 2>&1; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      echo "installing $$pkg"; (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkg >/dev/null; \
	    else echo "make test needs $$cmd: install the Debian package $$pkg (e.g. sudo apt-get install $$pkg)"; exit 1; fi; \
	  fi; \
	done

js-deps: clients/js/node_modules/.package-lock.json
clients/js/node_modules/.package-lock.json: clients/js/package-lock.json
	cd clients/js && npm ci --no-audit --no-fund --loglevel=error

# Test files are spread over one worker per core (pytest-xdist; each test file stays on one
# worker, so its module fixtures are set up once). PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= auto
test-python: install-dev model system-deps js-deps
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile tests
	cd clients/python && $(abspath $(BIN))/python -m pytest -q tests

test-js: install-dev model system-deps js-deps
	cd clients/js && KINETOSCOPE_PYTHON=$(abspath $(BIN)/python) npm test

test: test-python test-js

bench: install-dev model
	$(BIN)/kinetoscope bench-runtime tasks
	$(BIN)/kinetoscope bench-runtime serving

# The wheels scripts/gpu-bench.sh installs on a GPU machine that has PyTorch but none of the
# serving dependencies and no package index (cli/bench/wheels.py: the server's and the SDK's
# dependency closure at the versions installed here, less numpy, torch, ONNX Runtime, Pillow,
# safetensors and imageio-ffmpeg; about 7 MB, all pure Python but pydantic-core), built for that
# machine's Python (GPU_PYTHON, 3.12 on the lent H200s). Carry wheels/ along with the tree.
GPU_WHEELS ?= wheels
GPU_PYTHON ?= 3.12
GPU_PLATFORMS := --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
gpu-wheels: $(SERVE_DEPS)
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	$(BIN)/python -m cli.bench.wheels $(GPU_PYTHON) > $(GPU_WHEELS)/requirements.txt
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp \
	  $(GPU_PLATFORMS) -d $(GPU_WHEELS) -r $(GPU_WHEELS)/requirements.txt
	@ls $(GPU_WHEELS)/*.whl | wc -l | xargs echo "wheels:"; du -sh $(GPU_WHEELS)

clean:
	rm -rf $(VENV) model_repository runs artifacts clients/js/node_modules clients/js/dist
