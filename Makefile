# memdiag: two commands do everything on a fresh machine.
#   make demo   run a sample leak, take two snapshots, diff them
#   make test   the test suite on Python 3.11 and 3.13 (what CI runs)
# More: make test-all (3.10-3.13), make test-slow, make fuzz, make bench.

PYTHON        ?= $(shell scripts/find-python 3.11 2>/dev/null || command -v python3)
TEST_PYTHONS  ?= 3.11 3.13
ALL_PYTHONS   ?= 3.10 3.11 3.12 3.13
PYTEST_ARGS   ?=

.PHONY: demo test test-all test-slow fuzz bench clean venv

venv:
	@scripts/mkvenv .venv $(PYTHON) test

demo: venv
	.venv/bin/memdiag demo

test:
	@set -e; for v in $(TEST_PYTHONS); do \
	  py=$$(scripts/find-python $$v); \
	  scripts/mkvenv .venv-$$v $$py test; \
	  echo "== Python $$v: pytest"; \
	  .venv-$$v/bin/python -m pytest -q -m "not slow" $(PYTEST_ARGS); \
	done

test-all:
	@$(MAKE) test TEST_PYTHONS="$(ALL_PYTHONS)"

test-slow:
	@set -e; for v in $(TEST_PYTHONS); do \
	  py=$$(scripts/find-python $$v); \
	  scripts/mkvenv .venv-$$v $$py test; \
	  echo "== Python $$v: pytest -m slow"; \
	  .venv-$$v/bin/python -m pytest -q -m slow $(PYTEST_ARGS); \
	done

# make fuzz: damaged and hostile snapshot files through the whole CLI pipeline
# (tests/test_fuzz.py), FUZZ_EXAMPLES hypothesis cases in all (CI runs 300).
FUZZ_EXAMPLES ?= 10000

fuzz: venv
	MEMDIAG_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) .venv/bin/python -m pytest -q tests/test_fuzz.py $(PYTEST_ARGS)

clean:
	rm -rf .venv .venv-* build *.egg-info memdiag/*.so demo-out .pytest_cache .hypothesis

# make bench: memdiag against guppy3, objgraph and tracemalloc on heaps of
# 100k, 1M and 3M objects (a few minutes); pick sizes with SIZES=100000,1000000.
# Prints the ratios against the goals; raw JSON goes to bench/results/.
SIZES      ?= 100000,1000000,3000000
BENCH_ARGS ?=

bench: venv
	.venv/bin/python bench/run.py --sizes $(SIZES) $(BENCH_ARGS)
