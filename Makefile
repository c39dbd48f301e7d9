# The two set-up commands: `make run` (stack + service with demo data and real calls)
# and `make test` (the whole suite against the real stack). .ci/run calls `make test`.
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: run test stop status bench bench-report bench-freeswitch bench-all lint bootstrap

bootstrap:
	@scripts/bootstrap.sh

run: bootstrap
	$(VENV)/python -m scripts.devstack stack up
	$(VENV)/python -m scripts.devstack demo seed
	$(VENV)/python -m scripts.devstack demo run

test: bootstrap
	$(VENV)/python -m scripts.devstack stack up
	$(VENV)/ruff check .
	$(VENV)/mypy
	$(VENV)/pytest

stop:
	$(VENV)/python -m scripts.devstack stack down

status:
	$(VENV)/python -m scripts.devstack stack status

# The hot path's benchmarks (issue 14), each writing bench/results/*.json, then one table
# of figure / goal / measured / pass (bench/report.py; `make bench-report` prints it alone).
bench: bootstrap
	$(VENV)/python -m scripts.devstack stack up
	$(VENV)/python bench/call_path.py
	$(VENV)/python bench/agi_direct.py
	$(VENV)/python bench/reservations.py
	$(VENV)/python bench/snapshot_memory.py
	$(VENV)/python bench/report.py

bench-report:
	$(VENV)/python bench/report.py

# The same comparison through FreeSWITCH (static dialplan vs the outbound Event Socket) at
# 25, 50 and 100 cps, in about 2 min: bench/results/freeswitch_path.json.
bench-freeswitch: bootstrap
	$(VENV)/python -m scripts.devstack stack up
	$(VENV)/python bench/freeswitch_path.py

# Every SIPp scenario of docs/load-testing.md plus FastAGI load at 300/s, in about 2.5 min:
# bench/results/harness.json.
bench-all: bootstrap
	$(VENV)/python bench/harness.py

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
