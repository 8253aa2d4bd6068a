# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when it is
# missing and install everything they need into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# A test whose worker process dies is rerun once in a fresh worker (pytest-rerunfailures' crash
# recovery). Two full runs in session 4 lost a worker inside XLA's CPU compiler after the
# worker's memory mappings reached vm.max_map_count; tests/conftest.py now frees compiled code
# after each module, and this is the safety net. The --only-rerun pattern matches no error
# message, so an ordinary failure is never rerun.
PYTEST_ARGS ?= -n auto --reruns 1 --only-rerun '^worker-crash-only$$'

.PHONY: demo test test-slow bench validate vtt lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m twin demo --out out

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_simulate.py
	$(PY) benchmarks/bench_dose.py
	$(PY) benchmarks/bench_calibration.py
	$(PY) benchmarks/bench_mbam.py

# Validation report (verification, dosimetry, clinical comparison) under benchmarks/results/validation/
validate: $(STAMP)
	$(PY) benchmarks/validate.py

# Virtual theranostic trial benchmark: benchmarks/results/vtt.json and a figure
vtt: $(STAMP)
	$(PY) benchmarks/vtt.py

lint: $(STAMP)
	$(VENV)/bin/ruff check pbpk mbam calibration twin tests benchmarks tools

clean:
	rm -rf $(VENV) out .pytest_cache
