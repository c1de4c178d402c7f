# Two commands do all the set-up: `make demo` runs the demo, `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: demo test lint bench browser postgres clean fuzz nlu-model

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The learned classifier's artifact (gitignored): named by a fingerprint of the corpus, so
# `nlu train` is cheap to call: it is re-trained whenever the corpus or catalogue changed.
nlu-model: $(BIN)/.installed
	@$(BIN)/python -c "from bot.understanding import model; import sys; sys.exit(0 if model.default_path().exists() else 1)" \
	  || $(BIN)/patient-status nlu train

demo: $(BIN)/.installed nlu-model
	$(BIN)/patient-status demo --port $(PORT)

test: $(BIN)/.installed browser nlu-model
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q
	@echo "time-sensitive tests again, with the clock 52 weeks ahead and across a DST change"
	TEST_CLOCK_SHIFT=year $(BIN)/pytest -q -m clock
	TEST_CLOCK_SHIFT=dst $(BIN)/pytest -q -m clock

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The staff-console tests drive Debian's Chromium (a browser download does not work here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium: browser tests will skip (CI=true makes them fail)"; }

bench: $(BIN)/.installed nlu-model
	$(BIN)/python benchmarks/bench_status.py
	$(BIN)/python benchmarks/bench_nlu.py

# The long fuzz run (docs/security.md): schemathesis and hypothesis, SQLite and PostgreSQL.
fuzz: $(BIN)/.installed
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-800} $(BIN)/pytest -q -m fuzz -p no:cacheprovider

clean:
	rm -rf $(VENV) patient-status.db patient-status.db-wal patient-status.db-shm
