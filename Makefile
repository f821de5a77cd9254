# Two commands do everything on a fresh machine; each builds the virtual environment on first use.
#   make demo   collect the last three days from the bundled Zoom simulator into ./.zoom_demo/store
#   make test   run the whole test suite (starts its own S3 server, simulator and PostgreSQL)
#   make quick  the pure core only (no server, no Dagster instance), in seconds
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/dagster_home

.PHONY: demo test quick bench dev lint clean

# setuptools' "Editable installation ... folders with the same name as your package" notice describes
# exactly what an editable checkout is for; only that one notice is silenced.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 2>/dev/null || true
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -e '.[dev]' 2>&1 \
		| grep -v "is ignored: it is neither a file nor a directory" || true
	$(PY) -c "import dagster, dagster_aws, moto, zoom_pipeline"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m zoom_pipeline.demo

# Four workers on two cores: much of the suite waits (servers starting, daemon ticks, rate limits). Tests go
# out one at a time, the daemon tests first (tests/conftest.py), so no worker ends the run alone.
test: $(VENV)/.installed
	$(PY) -m pytest -n 4 --dist load --maxschedchunk 1

quick: $(VENV)/.installed
	$(PY) -m pytest -q -m "not io" -n 2

bench: $(VENV)/.installed
	$(PY) bench/benchmark.py

dev: $(VENV)/.installed
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check zoom_pipeline tests bench

clean:
	rm -rf $(VENV) .zoom_store
