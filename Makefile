# The README's quick-start commands. Every target runs the idempotent set-up first.
.PHONY: setup test fuzz demo lint contracts

setup:
	scripts/setup

PY_SOURCES = broker tests benchmarks scripts/compile_contracts.py

test: setup
	.venv/bin/ruff format --check $(PY_SOURCES)
	.venv/bin/ruff check $(PY_SOURCES)
	.venv/bin/lint-imports
	.venv/bin/python -m pytest -q

# Hostile inputs and schemathesis fuzzing of serve, the gateway and the worker; more examples
# per operation with e.g. `make fuzz ZG_FUZZ_EXAMPLES=50`.
fuzz: setup
	ZG_FUZZ_EXAMPLES=$${ZG_FUZZ_EXAMPLES:-3} .venv/bin/python -m pytest tests/fuzz -q

demo: setup
	scripts/demo

lint: setup
	.venv/bin/ruff format --check $(PY_SOURCES)
	.venv/bin/ruff check $(PY_SOURCES)
	.venv/bin/lint-imports

contracts: setup
	.venv/bin/python scripts/compile_contracts.py
