# framedex: `make demo` runs the offline demo end to end, `make test` runs the tests.
# Both create (or reuse) the virtualenv in $(VENV) and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.framedex-installed

.PHONY: install demo test test-fast test-slow test-all bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,ray]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

# The tests on 4 workers (a module's tests share one worker and its fixtures), then the
# type check (mypy) and the linter (ruff), both configured in pyproject.toml: the README's
# test command, which .ci/run calls. Tests marked slow (more writers, S3 replicas, the Ray and CLI start-up benchmarks)
# run in `make test-slow`, which .ci/run calls too.
XDIST := -n 4 --dist loadfile
test: $(STAMP)
	$(PY) -m pytest -q $(XDIST)
	$(PY) -m mypy
	$(PY) -m ruff check src tests scripts

# The inner loop: what starts no server, cluster, browser or process and loads no big model
# (CPU-bound, so one worker per core).
test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow and not gpu and not network and not heavy"

test-slow: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m slow

test-all: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m ''

clean:
	rm -rf demo-out .pytest_cache
