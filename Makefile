# Two commands set everything up on a fresh machine:
#   make serve   venv + install + export the demo model if needed, then serve it on 127.0.0.1:$(PORT)
#   make test    venv + install + system tools the tests need, then every test (Python, JS, browser)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
HOST   ?= 127.0.0.1
REPO   := model_repository/moving-digits
CKPT   := $(wildcard models/checkpoints/demo/*)
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: serve test install model system-deps js-deps test-python test-js bench clean

$(BIN)/kinetoscope: pyproject.toml clients/python/pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# PyTorch 2.13.0 (CPU build on this team's machines) is needed to export, train and evaluate;
	# the server itself runs on ONNX Runtime.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[train,test]' -e clients/python
	touch $@

install: $(BIN)/kinetoscope

$(REPO)/manifest.json: $(CKPT) | $(BIN)/kinetoscope
	$(BIN)/kinetoscope export onnx --out $(REPO)

model: $(REPO)/manifest.json

serve: model
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

test-python: install model system-deps
	$(BIN)/python -m pytest -q tests
	cd clients/python && $(abspath $(BIN))/python -m pytest -q tests

test-js: install model system-deps js-deps
	cd clients/js && KINETOSCOPE_PYTHON=$(abspath $(BIN)/python) npm test

test: test-python test-js

bench: model
	$(BIN)/python -m server.benchmarks tasks
	$(BIN)/python -m server.benchmarks serving

clean:
	rm -rf $(VENV) model_repository runs artifacts clients/js/node_modules clients/js/dist
