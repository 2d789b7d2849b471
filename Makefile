# framedex: `make demo` runs the offline demo end to end, `make test` runs the tests.
# Both create (or reuse) the virtualenv in $(VENV) and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.framedex-installed

.PHONY: install demo test test-all bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,ray]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

# The tests, then the type check (mypy, configured in pyproject.toml): one target, the one
# .ci/run calls.
test: $(STAMP)
	$(PY) -m pytest -q
	$(PY) -m mypy

test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

clean:
	rm -rf demo-out .pytest_cache
