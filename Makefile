# memdiag: two commands do everything on a fresh machine.
#   make demo   run a sample leak, take two snapshots, diff them
#   make test   the test suite on the Pythons in TEST_PYTHONS (what CI runs)
# More: make test-all (3.11-3.15), make test-slow, make fuzz, make bench.
#
# memdiag supports Python 3.11-3.15. scripts/find-python finds each version
# (PATH, pyenv, else Debian's build unpacked by scripts/debian-python, for
# 3.14 and 3.15). The compiled walker must build (scripts/mkvenv stops with the
# compiler's error otherwise); MEMDIAG_ALLOW_PURE=1 tests the pure-Python
# fallback instead, with the compiled-walker tests skipped.

PYTHON        ?= $(shell scripts/find-python 3.11 2>/dev/null || command -v python3)
# The oldest and the newest supported Python (make test-all: every one).
TEST_PYTHONS  ?= 3.11 3.15
ALL_PYTHONS   ?= 3.11 3.12 3.13 3.14 3.15
PYTEST_ARGS   ?=

.PHONY: demo test test-all test-slow fuzz bench clean venv

venv:
	@scripts/mkvenv .venv $(PYTHON) test

demo: venv
	.venv/bin/memdiag demo

# What the tests need besides the venvs: Chromium for the HTML report's browser
# test, tmux for the live view's terminal test, and a debugger for `memdiag
# attach` on 3.11-3.13 targets. Each script installs what is missing; where
# it cannot, the tests that need it skip and say why, unless
# MEMDIAG_REQUIRE_TOOLS=1 (CI) makes that an error.
test:
	@set -e; scripts/install-browser; \
	scripts/install-tmux || [ -z "$$MEMDIAG_REQUIRE_TOOLS" ]; \
	for v in $(TEST_PYTHONS); do \
	  py=$$(scripts/find-python $$v); \
	  scripts/mkvenv .venv-$$v $$py test; \
	  scripts/install-debugger .venv-$$v || [ -z "$$MEMDIAG_REQUIRE_TOOLS" ]; \
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
# It also compares the compiled walker on two Pythons (bench/versions.py):
# their venvs are made first, which builds the walker in place for each.
SIZES      ?= 100000,1000000,3000000
BENCH_ARGS ?=
BENCH_PYTHONS ?= 3.13 3.15

bench: venv
	@set -e; for v in $(BENCH_PYTHONS); do \
	  scripts/mkvenv .venv-$$v $$(scripts/find-python $$v) bench; \
	done
	.venv/bin/python bench/run.py --sizes $(SIZES) --versions $$(echo $(BENCH_PYTHONS) | tr ' ' ,) $(BENCH_ARGS)
