# probekit: frozen encoder -> feature cache -> classical ML -> report.
# Each stage target is one `probekit` call; `make help` lists them.

.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
PEERS_VENV ?= $(VENV)-peers
TORCH ?= torch==2.13.0
CONFIG ?= configs/demo.toml
DATA ?=
ARTIFACTS ?= artifacts
SET ?=
RUN ?= $(ARTIFACTS)/demo
TEXT ?=
FILE ?=
COLUMN ?=
MODEL ?=
FORMAT ?= table

# bench-extract and bench-finetune time the config's [data]: CONFIG when given on the command line, else GoEmotions'
# layout when DATA names its folder, else the demo data
BENCH_CONFIG = $(if $(filter command line environment,$(origin CONFIG)),$(CONFIG),$(if $(DATA),configs/goemotions-local.toml,configs/demo.toml))

BIN := $(VENV)/bin
args = --config $(1) $(if $(DATA),--data $(DATA)) --artifacts $(ARTIFACTS) $(foreach s,$(SET),--set $(s))
ARGS = $(call args,$(CONFIG))

## ---- pipeline ---------------------------------------------------------------

## demo: the whole pipeline on the embedded default (bundled data, packaged MiniLM, CPU, offline)
.PHONY: demo
demo: $(VENV)/.extract
	$(MAKE) --no-print-directory extract classify report CONFIG=configs/demo.toml

## extract: run the frozen encoder over every split; cache the features (CONFIG, DATA, ARTIFACTS)
.PHONY: extract
extract: $(VENV)/.extract
	$(BIN)/probekit extract $(ARGS)

## classify: train the classifiers on the cached features; write metrics.json (no torch needed)
.PHONY: classify
classify: $(VENV)/.core
	$(BIN)/probekit classify $(ARGS)

## report: UMAP, confusion reports, per-label ROC-AUC, report/index.html, W&B (offline)
.PHONY: report
report: $(VENV)/.core
	$(BIN)/probekit report $(ARGS)

## finetune: fine-tune the encoder end to end into <run>/finetuned/; make classify then scores it (CONFIG, DATA, ARTIFACTS, SET)
.PHONY: finetune
finetune: $(VENV)/.extract
	$(BIN)/probekit finetune $(ARGS)

## search: [search] model's classify grid x pooling x thresholds on the cached features; each trial a W&B run
.PHONY: search
search: $(VENV)/.core
	$(BIN)/probekit search $(ARGS)

## predict: label new texts with a run's model: RUN=artifacts/<run> TEXT="..." or FILE=... [COLUMN= MODEL= FORMAT=jsonl]
.PHONY: predict
predict: $(VENV)/.extract
	$(BIN)/probekit predict --run $(RUN) $(if $(TEXT),--text "$(TEXT)") $(if $(FILE),--file $(FILE)) $(if $(COLUMN),--column $(COLUMN)) $(if $(MODEL),--model $(MODEL)) --format $(FORMAT)

## config: the resolved settings as a preset (CONFIG, DATA, SET; ALL=1 adds the advanced keys)
.PHONY: config
config: $(VENV)/.core
	$(BIN)/probekit config $(ARGS) $(if $(ALL),--all)

## table: a finished run's results table (Markdown, from its metrics.json): RUN=artifacts/<run>
.PHONY: table
table: $(VENV)/.core
	$(BIN)/probekit table --run $(RUN)

## ---- benchmarks (not tests: they time things) ------------------------------------

## bench-extract: extraction speed vs the book's recipe and sentence-transformers on torch, ONNX and OpenVINO
##   (JSON + table; DATA=<GoEmotions dir> times that copy (configs/goemotions-local.toml); no DATA times the
##   demo data; the peers run in their own venv, .venv-peers, built on first use)
.PHONY: bench-extract
bench-extract: $(VENV)/.extract $(PEERS_VENV)/.peers
	$(BIN)/probekit bench-extract --set bench.peers_python=$(PEERS_VENV)/bin/python $(call args,$(BENCH_CONFIG))

## bench-finetune: one epoch of fine-tuning vs HF Trainer, side by side (JSON + table; DATA= as bench-extract;
##   needs the bench extra, accelerate)
.PHONY: bench-finetune
bench-finetune: $(VENV)/.bench
	$(BIN)/probekit bench-finetune $(call args,$(BENCH_CONFIG))

## ---- development -------------------------------------------------------------

## test: the test suite (sets up .venv with every extra first)
.PHONY: test
test: $(VENV)/.dev
	$(BIN)/python -m pytest

## lint: ruff over the code
.PHONY: lint
lint: $(VENV)/.dev
	$(BIN)/ruff check probekit extract classify analysis tests

## install: .venv with every extra (TORCH=... picks the torch build; default: CPU 2.13.0)
.PHONY: install
install: $(VENV)/.dev

## clean: remove generated artifacts (keeps artifacts/README.md) and the virtual environments (.venv, .venv-peers)
.PHONY: clean
clean:
	find $(ARTIFACTS) -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf $(VENV) $(PEERS_VENV)

## help: this list
.PHONY: help
help:
	@awk '/^## /{sub(/^## /, ""); n = index($$0, ":"); \
	  if (n > 0 && substr($$0, 1, 4) != "----") printf "  %-14s %s\n", substr($$0, 1, n - 1), substr($$0, n + 2); \
	  else print}' $(MAKEFILE_LIST)

# The laptop environment: classify and report, no torch.
$(VENV)/.core: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[classify,analysis]'
	touch $@

# The encoder environment. torch comes first, from $(TORCH), so nothing later pulls
# another build (plain `torch` from PyPI drags in GBs of CUDA packages).
$(VENV)/.extract: $(VENV)/.core
	$(BIN)/python -m pip install -q '$(TORCH)'
	$(BIN)/python -m pip install -q -e '.[extract,offline]'
	touch $@

$(VENV)/.dev: $(VENV)/.extract
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $@

# bench-extract's peers (sentence-transformers on ONNX and OpenVINO): their exporters pin an older transformers,
# so they get a venv of their own, where the bench runs them in a worker process. torch first, as above.
$(PEERS_VENV)/.peers: pyproject.toml
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q '$(TORCH)'
	$(PEERS_VENV)/bin/python -m pip install -q -e '.[peers]'
	touch $@

# HF Trainer, the anchor of bench-finetune, needs accelerate; the runtime does not.
$(VENV)/.bench: $(VENV)/.extract
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $@
