# depth-book: `make test` and `make book` work on a fresh clone; both create .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch / torchvision: pinned here only so the install takes the known build on this machine's
# disk; depthlib itself does not pin them (Colab brings its own).
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: all venv test unit nbval book book-structure browser-assets browser-test clean gpu-check gpu-wheels

all: test

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[book,test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

# Every notebook of both editions under nbval (inside the venv's kernel). nbval ends each kernel
# with a kill, so the chapters' temporary folders (tempfile, removed when a kernel exits normally;
# chapter 06's is 32 MB) would stay behind: the kernels get a TMPDIR of their own, removed after.
# CUDA_VISIBLE_DEVICES empty: the CPU path, as in CI, on a GPU machine too (make gpu-check runs the
# chapters on the GPU).
NBVAL = tmp=$$(mktemp -d -t depth-book-nbval-XXXXXX) && \
	{ CUDA_VISIBLE_DEVICES= TMPDIR=$$tmp $(PY) -m pytest --nbval-lax --nbval-kernel-name python3 -p no:cacheprovider chapters/en chapters/zh; \
	status=$$?; rm -rf "$$tmp"; exit $$status; }

# Unit tests, then every notebook of both editions under nbval.
test: $(STAMP)
	$(PY) -m pytest tests
	@echo "nbval: chapters/en chapters/zh"
	@$(NBVAL)

unit: $(STAMP)
	$(PY) -m pytest tests

nbval: $(STAMP)
	@$(NBVAL)

# The executed book (both editions) in _build/html, then every page of it in headless Chromium.
# DEPTHLIB_PROGRESS=line: the Trainer's progress as one line on stdout, printed when its bar closes
# (a widget would need a live kernel; see _config.yml).
book: $(STAMP)
	DEPTHLIB_PROGRESS=line $(VENV)/bin/jupyter-book build . --builder html -W -n --keep-going
	$(MAKE) --no-print-directory browser-test BROWSER_HTML=_build/html

# Structural check: toc, cross-references and pages, with execution off (what CI runs).
# The config is _config.yml with execution off, written next to it so relative paths still hold.
book-structure: $(STAMP)
	$(PY) -c "import yaml; c = yaml.safe_load(open('_config.yml')); c['execute']['execute_notebooks'] = 'off'; \
	yaml.safe_dump(c, open('_config.structural.yml', 'w'), allow_unicode=True)"
	$(VENV)/bin/jupyter-book build . --builder html -W -n --keep-going --config _config.structural.yml --path-output _build/structural; \
	status=$$?; rm -f _config.structural.yml; exit $$status

# The rendered book in headless Chromium (tests/test_browser.py, its server and crawler in
# tests/book_browser.py): every page of BROWSER_HTML served on localhost; links, images, console
# errors, typeset math, Colab button, other-edition link, exercise hints and solutions that open,
# code that fits a 1280 px window; screenshots in BROWSER_HTML/../screenshots. Needs Debian's
# `chromium` (skips without it).
# The structural build: make browser-test BROWSER_HTML=_build/structural/_build/html
BROWSER_HTML ?= _build/html
browser-test: $(STAMP)
	@$(MAKE) --no-print-directory browser-assets || \
	  echo "browser-test: could not fetch the local CDN copies; the browser test will skip"
	DEPTHBOOK_HTML=$(BROWSER_HTML) $(PY) -m pytest -p no:cacheprovider tests/test_browser.py

# Local copies of the CDN files the pages load (MathJax 3), from the npm registry into
# .cache/browser-assets: the browser test serves them in place of the CDN, offline. Once; later
# runs find them.
browser-assets: $(STAMP)
	$(PY) tests/book_browser.py fetch-assets

clean:
	rm -rf _build _config.structural.yml

# The GPU path end to end, on any CUDA machine (never CI, which has no GPU): pytest -m cuda, the
# chapters' data sets rendered once, every chapter of both editions on the gpu profile, python -m
# depthlib.bench; one summary table at the end (GPU_CHECK_OUT/summary.md). On a machine lent for
# a few minutes: GPU_CHECK_ARGS="--jobs 4 --budget 540". Uses .venv when there is one, else the machine's python3.
GPU_CHECK_OUT ?= runs/gpu-check
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PY) -m depthlib.gpucheck --out $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)

# For a CUDA machine without internet (a cluster's compute node, a machine lent for minutes) that
# has PyTorch but no Jupyter: the wheels make gpu-check needs beyond PyTorch (papermill, ipykernel,
# nbclient, nbformat and everything they need; about 19 MB) for that machine's Python, into .whl/.
# Copy the checkout there, then:
#   python3 -m pip install --no-index --find-links .whl --target /tmp/site papermill ipykernel nbclient
#   PYTHONPATH=/tmp/site:$PWD make gpu-check    (absolute: the chapters' kernels run in their own folders)
GPU_PYVER ?= 3.12
gpu-wheels:
	$(PYTHON) -m pip download -q --only-binary=:all: --python-version $(GPU_PYVER) --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d .whl papermill ipykernel nbclient nbformat
	@du -sh .whl
