# The lab's single entry point. Each target does its own set-up, idempotently.
.PHONY: setup study quick-study lab test lint up down status clean-stack

setup:
	@./scripts/setup.sh

study: setup
	.venv/bin/lab study

quick-study: setup
	.venv/bin/lab study --preset quick

lab: setup
	.venv/bin/lab lab

# the unit tests on both cores first, then the stack tests in one process (they share one deployment)
test: setup
	.venv/bin/lab engine
	.venv/bin/python -m pytest -q -ra -m "not stack" -n 2 --durations=10
	.venv/bin/python -m pytest -q -ra -m stack --durations=25

lint: setup
	.venv/bin/ruff check lab tests

up: setup
	.venv/bin/lab up

down: setup
	.venv/bin/lab down

status: setup
	.venv/bin/lab status
