# benchsync — quick start:  make demo  (file the sample logs),  make test  (run the tests)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test lint install clean-demo

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	bin/ftp_sync --config etc/demo.ini -v
	bin/benchsync status --config etc/demo.ini

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check lib tests bin bench
	$(VENV)/bin/ruff format --check lib tests bin bench

clean-demo:
	rm -rf var/
