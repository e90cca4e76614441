# The README's quick-start commands. Every target runs the idempotent set-up first.
.PHONY: setup test demo lint contracts

setup:
	scripts/setup

test: setup
	.venv/bin/lint-imports
	.venv/bin/python -m pytest -q

demo: setup
	scripts/demo

lint: setup
	.venv/bin/ruff check src tests
	.venv/bin/lint-imports

contracts: setup
	.venv/bin/python scripts/compile_contracts.py
