# The two commands of the README are `make demo` and `make test`; the rest serve them.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install up down status lint format clean

## demo: install, start the local stack, run the main job (DEMO_SECONDS=N stops after N s)
demo: install
	$(BIN)/python scripts/demo.py

## test: install, start the local stack, run the whole test suite against the real services
test: install
	$(BIN)/coyote-sdk dev up
	$(BIN)/pytest $(PYTEST_ARGS)

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

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## clean: stop the stack and remove everything it and the build wrote
clean:
	-[ -x $(BIN)/coyote-sdk ] && $(BIN)/coyote-sdk dev down
	rm -rf .coyote $(VENV) build */build */*.egg-info risk/coyote_risk/*.c risk/coyote_risk/*.so \
		executor/coyote_executor/*.c executor/coyote_executor/*.so
