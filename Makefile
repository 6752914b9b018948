# depth-book: `make test` and `make book` work on a fresh clone; both create .venv when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch / torchvision: pinned here only so the install takes the known build on this machine's
# disk; depthlib itself does not pin them (Colab brings its own).
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: all venv test unit nbval book book-structure clean

all: test

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[book,test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

venv: $(STAMP)

# Unit tests, then every notebook of both editions under nbval (inside the venv's kernel).
test: $(STAMP)
	$(PY) -m pytest tests
	$(PY) -m pytest --nbval-lax --nbval-kernel-name python3 -p no:cacheprovider chapters/en chapters/zh

unit: $(STAMP)
	$(PY) -m pytest tests

nbval: $(STAMP)
	$(PY) -m pytest --nbval-lax --nbval-kernel-name python3 -p no:cacheprovider chapters/en chapters/zh

# The executed book (both editions) in _build/html.
book: $(STAMP)
	$(VENV)/bin/jupyter-book build . --builder html -W -n --keep-going

# Structural check: toc, cross-references and pages, with execution off (what CI runs).
# The config is _config.yml with execution off, written next to it so relative paths still hold.
book-structure: $(STAMP)
	$(PY) -c "import yaml; c = yaml.safe_load(open('_config.yml')); c['execute']['execute_notebooks'] = 'off'; \
	yaml.safe_dump(c, open('_config.structural.yml', 'w'), allow_unicode=True)"
	$(VENV)/bin/jupyter-book build . --builder html -W -n --keep-going --config _config.structural.yml --path-output _build/structural; \
	status=$$?; rm -f _config.structural.yml; exit $$status

clean:
	rm -rf _build _config.structural.yml
