# Serverless multimodal image search: the menu.
#   make dev     create .venv and node_modules from the repo's own files
#   make test    set-up + the whole suite (unit, integration, infra, e2e), then the
#                IAM conformance check of the calls the suite's functions made
#   make lint    ruff + mypy
#   make synth   cdk synth -> cdk.out/*.template.json (no Docker, no AWS account; CDK_ARGS as deploy)
#   make bench   print benchmark figures
#   make local   the whole product on this machine (SPEC section 8); installs only
#                requirements-local.txt. Passes through PORT, DROPBOX, EMBEDDER,
#                VECTOR_STORE, MODEL_ID, EMBEDDING_DIMENSION, STATE_DIR; more options
#                in LOCAL_ARGS, e.g. make local LOCAL_ARGS="--host 0.0.0.0"
#   make deploy  cdk deploy (needs AWS credentials, Bedrock model access, cdk bootstrap)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pip for the venv: its own once it has one; before that this Python's pip driving it
# (pip --python), which spares ensurepip copying pip into a fresh venv (up to a minute
# on a busy machine); without a usable pip here, the venv's own from ensurepip.
SYSTEM_PIP := $(shell $(PYTHON) -m pip --help 2>/dev/null | grep -q -- '--python' && echo yes)
PIP = $(if $(wildcard $(VENV)/bin/pip),$(PY) -m pip,$(if $(SYSTEM_PIP),$(PYTHON) -m pip --python $(PY),$(PY) -m pip))
# Wheels are not byte-compiled at install: imports compile what local mode uses.
PIP_INSTALL = $(PIP) install --progress-bar on --no-compile
CDK := node_modules/.bin/cdk
STAMP := $(VENV)/.installed
LOCAL_STAMP := $(VENV)/.local-installed
NODE_STAMP := node_modules/.installed
CLIP_STAMP := $(VENV)/.clip-installed
# Two workers (the machines have 2 cores); a test file stays on one worker, so its
# module-scoped local mode and moto fixtures start once.
PYTEST_ARGS ?= -n 2 --dist loadfile
CDK_ARGS ?=
LOCAL_ARGS ?=
# SPEC section 8: `make local` hands these to `imagesearch local`, from the environment
# or the make command line (`make local EMBEDDER=clip`); unset ones stay unset.
LOCAL_ENV := PORT DROPBOX EMBEDDER VECTOR_STORE MODEL_ID EMBEDDING_DIMENSION STATE_DIR
$(foreach v,$(LOCAL_ENV),$(if $(filter undefined,$(origin $(v))),,$(eval export $(v))))

.PHONY: dev test lint synth bench local deploy browser clean

dev: $(STAMP) $(NODE_STAMP)

# Local mode's set: the runtime package, moto for three services, the CLI. pip shows
# its progress (a first run downloads ~100 MB of wheels).
$(LOCAL_STAMP): requirements-local.txt lambdas/requirements.txt pyproject.toml
	@echo "== setting up $(VENV) for local mode (requirements-local.txt)"
	test -x $(PY) || $(PYTHON) -m venv $(if $(SYSTEM_PIP),--without-pip) $(VENV)
	$(PIP_INSTALL) -r requirements-local.txt
	@echo "== installing the imagesearch command (editable)"
	$(PIP_INSTALL) --no-deps --no-build-isolation -e .
	touch $@

# Everything else on top: CDK, linters, test tools.
$(STAMP): $(LOCAL_STAMP) requirements.txt requirements-dev.txt
	@echo "== installing the development set (requirements-dev.txt)"
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

# The optional local CLIP embedder (torch CPU build): installed for the test suite
# so its real loading code is tested; users add it with `make local EMBEDDER=clip`.
# On Linux PyPI's torch is a multi-GB CUDA build: torch comes first from a wheel in
# pip's find-links if one is there (no index asked; its dependencies come with the
# file below), else from PyTorch's CPU index.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_PIN := $(shell sed -n 's/^\(torch==[^ ]*\).*/\1/p' requirements-clip.txt)
IS_LINUX := $(filter Linux,$(shell uname -s))
$(CLIP_STAMP): $(LOCAL_STAMP) requirements-clip.txt
	@echo "== installing the optional CLIP embedder (requirements-clip.txt, ~1 GB)"
	$(if $(IS_LINUX),$(PIP_INSTALL) --no-index --no-deps $(TORCH_PIN) || $(PIP_INSTALL) --index-url $(TORCH_CPU_INDEX) $(TORCH_PIN))
	$(PIP_INSTALL) -r requirements-clip.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Headless Chromium for the web page test. Installed from Debian where we are
# root (CI runs as root); elsewhere the browser test skips and says why.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian chromium for the browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install chromium: the browser test will skip"; \
	else echo "chromium missing and not root: the browser test will skip"; fi

# The suite records every AWS call the functions' code makes (tests/support/iam); the IAM
# conformance test then checks each against its function's role in the synthesized
# template and prints the report (call site -> action -> resource, unused grants).
IAM_CALLS := $(CURDIR)/.build/iam-calls

test: dev $(CLIP_STAMP) browser
	$(VENV)/bin/ruff check .
	rm -rf $(IAM_CALLS)
	IMAGESEARCH_IAM_RECORD=$(IAM_CALLS) $(PY) -m pytest $(PYTEST_ARGS)
	IMAGESEARCH_IAM_CALLS=$(IAM_CALLS) $(PY) -m pytest -s tests/infra/test_iam_conformance.py

lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

synth: dev
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CDK) synth --quiet $(CDK_ARGS)
	@ls cdk.out/*.template.json

deploy: dev
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CDK) deploy $(CDK_ARGS)

bench: dev
	$(PY) -m bench

# EMBEDDER=clip adds the optional CLIP extra first.
local: $(LOCAL_STAMP) $(if $(filter clip,$(EMBEDDER)),$(CLIP_STAMP))
	@echo "== starting local mode (Ctrl-C stops it)"
	$(VENV)/bin/imagesearch local $(LOCAL_ARGS)

clean:
	rm -rf $(VENV) node_modules cdk.out .build .pytest_cache
