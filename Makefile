# Two entry points: `make demo` runs Roost's main job, `make test` proves it. Both bootstrap first.
VENV := .venv/bin
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: bootstrap demo test lint typecheck pytest bench clean

bootstrap:
	scripts/bootstrap

demo: bootstrap
	$(VENV)/roost demo

test: bootstrap lint typecheck pytest

lint:
	$(VENV)/ruff check src tests bench
	$(VENV)/ruff format --check src tests bench

typecheck:
	$(VENV)/mypy

pytest:
	$(VENV)/pytest -p no:cacheprovider $(PYTEST_ARGS)

bench: bootstrap
	for b in bench/[a-z]*.py; do $(VENV)/python -P $$b --quick || exit 1; done

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
