# The two commands of the README are `make demo` and `make test`; the rest serve them.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-faults install up down status lint format bench clean

## demo: install, start the local stack, run the main job (DEMO_SECONDS=N stops after N s)
demo: install
	$(BIN)/python scripts/demo.py

## test: install, start the local stack, run the whole test suite against the real services
test:
	@COYOTE_BROWSER_TESTS=1 scripts/bootstrap.sh
	$(BIN)/coyote-sdk dev up
	$(BIN)/pytest $(PYTEST_ARGS)

## test-faults: only the fault-injection tests (tests/faults, marker `faults`): they run their own
## private Kafka, Redis and PostgreSQL, kill them and the executor, and write their figures to
## .coyote/test-artifacts/faults/ (see docs/reliability.md). `make test` runs them too.
test-faults:
	@scripts/bootstrap.sh
	$(BIN)/pytest -m faults $(PYTEST_ARGS)

install:
	@scripts/bootstrap.sh

up: install
	$(BIN)/coyote-sdk dev up

down:
	$(BIN)/coyote-sdk dev down

status:
	$(BIN)/coyote-sdk dev status

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: the benchmarks (bench/), into bench/results.json; NautilusTrader in its own venv
bench: install
	$(BIN)/coyote-sdk dev up
	@[ -x .coyote/bench-venv/bin/python ] || { \
		UV=$$(command -v uv || echo .coyote/tools/uv/bin/uv); \
		$$UV venv -q --python 3.11 .coyote/bench-venv && \
		$$UV pip install -q --python .coyote/bench-venv/bin/python nautilus_trader==1.221.0; }
	$(BIN)/python bench/marketdata.py
	$(BIN)/python bench/backtest.py
	$(BIN)/python bench/hotpath.py
	$(BIN)/python bench/risk.py
	$(BIN)/python bench/decode.py
	$(BIN)/python bench/reports.py
	$(BIN)/python bench/e2e.py

## clean: stop the stack and remove everything it and the build wrote
clean:
	-[ -x $(BIN)/coyote-sdk ] && $(BIN)/coyote-sdk dev down
	rm -rf .coyote $(VENV) build */build */*.egg-info risk/coyote_risk/*.c risk/coyote_risk/*.so \
		executor/coyote_executor/*.c executor/coyote_executor/*.so
