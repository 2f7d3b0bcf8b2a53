# Serverless multimodal image search: the menu.
#   make dev     create .venv and node_modules from the repo's own files
#   make test    set-up + the whole suite (unit, integration, infra, e2e)
#   make lint    ruff + mypy
#   make synth   cdk synth -> cdk.out/*.template.json (no Docker, no AWS account)
#   make bench   print benchmark figures
#   make local   the whole product on this machine (SPEC section 8)
#   make deploy  cdk deploy (needs AWS credentials, Bedrock model access, cdk bootstrap)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CDK := node_modules/.bin/cdk
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CLIP_STAMP := $(VENV)/.clip-installed
PYTEST_ARGS ?=
CDK_ARGS ?=

.PHONY: dev test lint synth bench local deploy browser clean

dev: $(STAMP) $(NODE_STAMP)

$(STAMP): requirements.txt requirements-dev.txt lambdas/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	$(PIP) install --quiet --no-deps -e .
	touch $@

# The optional local CLIP embedder (torch CPU build): installed for the test suite
# so its real loading code is tested; users add it with `pip install -r requirements-clip.txt`.
$(CLIP_STAMP): $(STAMP) requirements-clip.txt
	$(PIP) install --quiet -r requirements-clip.txt
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

test: dev $(CLIP_STAMP) browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

synth: dev
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CDK) synth --quiet
	@ls cdk.out/*.template.json

deploy: dev
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CDK) deploy $(CDK_ARGS)

bench: dev
	$(PY) -m bench

local: dev
	$(VENV)/bin/imagesearch local

clean:
	rm -rf $(VENV) node_modules cdk.out .build .pytest_cache
