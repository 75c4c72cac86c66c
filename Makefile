# The README's two commands: `make demo` (set up + the main job) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip -q --disable-pip-version-check
STAMP := $(VENV)/.setup-done

.PHONY: setup demo test test-fast race bench gpu-check gpu-bundle prep-multi30k prep-iwslt14 prep-iwslt14-eval clean-venv

SHARED ?= ../shared/data

setup: $(STAMP)

# fairseq-fixed compiles extensions against the installed torch, hence --no-build-isolation and torch first.
# Pins live in pyproject.toml; torch/numpy/cython here are the build requirements of fairseq-fixed.
$(STAMP): pyproject.toml Makefile cgc_fairseq/csrc/gate_core.cpp
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install torch==2.13.0 numpy==2.4.6 cython==3.3.1 wheel setuptools
	$(PIP) install --no-build-isolation -e ".[test]"
	$(PY) -c "import fairseq, torch, sacrebleu, sentencepiece, sacremoses, cgc_fairseq; print('setup ok: fairseq', fairseq.__version__, 'torch', torch.__version__)"
	$(PY) -c "from cgc_fairseq.fused_gate import extension; assert extension(), 'the fused gate kernel did not build'; print('fused gate kernel built')"
	touch $(STAMP)

# The main job: prepare data, train cgc_lightconv_small for 30 min, average, evaluate, plot (see README).
DEMO_ARGS ?=
demo: setup
	$(PY) -m scripts.demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest

# The edit loop: the model, gate, data and option tests, no training subprocesses (the tests not marked slow)
test-fast: setup
	$(PY) -m pytest -m "not slow"

# The BLEU race: 4 models x 3 seeds on Multi30k, 2 runs at a time, in the background (log: runs/race/race.log;
# rerunning continues a killed race). RACE_ARGS="--max-update 600" etc.
RACE_ARGS ?=
race: setup data-bin/multi30k.de-en/manifest.json
	$(PY) -m scripts.race --detach $(RACE_ARGS)

# Speed, memory, parameters: Transformer / LightConv / DynamicConv / CGC at the small and iwslt sizes.
BENCH_ARGS ?=
bench: setup data-bin/multi30k.de-en/manifest.json
	$(PY) -m scripts.bench --data data-bin/multi30k.de-en --out runs/bench $(BENCH_ARGS)

# On a CUDA machine: the model tests on cuda (fp32, fp16/bf16 autocast), the iwslt bench and a short bf16 race, in
# ~9 min, all under runs/gpu-check; without CUDA a tiny CPU dry run of the same steps.
GPU_CHECK_ARGS ?=
gpu-check: setup data-bin/multi30k.de-en/manifest.json
	$(PY) -m scripts.gpu_check --out runs/gpu-check $(GPU_CHECK_ARGS)

# The GPU check's wheels for the lent machine's image (Python 3.12, torch 2.11): .whl/ (< 48 MiB); the device call
# that installs and runs them: docs/usage.md
GPU_PYTHON ?= $(shell command -v python3.12 || echo $(HOME)/.pyenv/versions/3.12.1/bin/python)
gpu-bundle:
	bash scripts/gpu_bundle.sh $(GPU_PYTHON)

data-bin/multi30k.de-en/manifest.json:
	$(MAKE) prep-multi30k

prep-multi30k: setup
	$(PY) data-bin-prep/prepare.py multi30k --raw $(SHARED)/multi30k-de-en --out data-bin/multi30k.de-en

# needs the full release: IWSLT_RAW=dir-or-de-en.tgz, else downloads de-en.tgz
prep-iwslt14: setup
	$(PY) data-bin-prep/prepare.py iwslt14 $(if $(IWSLT_RAW),--raw $(IWSLT_RAW)) --out data-bin/iwslt14.de-en

prep-iwslt14-eval: setup
	$(PY) data-bin-prep/prepare.py iwslt14 --raw $(SHARED)/iwslt14-de-en --eval-only --out data-bin/iwslt14-eval

clean-venv:
	rm -rf $(VENV)
