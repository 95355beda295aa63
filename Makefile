# Two commands do all the set-up on a fresh machine: `make run` (the main job) and `make test` (the tests).
# Both create .venv with `python3 -m venv` and install the project with its server and test extras when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rmt-installed

.PHONY: run test lint unit clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[server,test]'
	touch $(STAMP)

## run: the campaign — every scenario, short, on the embedded tritonserver with the zoo; exits 0 when every verdict
## matches its expectation (healthy twins pass, planted defects fail on purpose)
run: $(STAMP)
	$(BIN)/rmt run campaign --expected

## test: lint, type-check and the whole test suite (real tritonserver, real Locust processes)
test: lint
	$(BIN)/python -m pytest

## lint: ruff, mypy and the import contracts of pyproject.toml's [tool.importlinter] (the layers of README's Layout)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
