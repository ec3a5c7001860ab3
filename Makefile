# Set-up and everyday commands. `make demo` runs the daemon against a simulated Mesos master;
# `make test` runs every test. Both create the virtualenvs they need on first use.

PYTHON ?= python3
VENV ?= .venv
VENV310 ?= .venv310
# Python 3.10 for the pymesos driver and the pymesos conformance tests: python3.10 on PATH, or
# the newest 3.10 that pyenv knows. Empty when there is none (those tests then skip outside CI).
PY310 ?= $(shell python3.10 -c 'import sys; print(sys.executable)' 2>/dev/null || \
	{ v=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.10(\.|$$)' | tail -n 1); \
	  [ -n "$$v" ] && PYENV_VERSION=$$v pyenv which python3.10 2>/dev/null; })
PYTEST_ARGS ?=
# Every pip run (build isolation included) takes the pinned versions of constraints.txt, so the
# same commit installs the same tools on any day.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: install install310 test demo lint format typecheck bench bench-quick clean

install: $(VENV)/.installed
$(VENV)/.installed: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

install310: $(VENV310)/.installed
$(VENV310)/.installed: setup.py constraints.txt
	@if [ -z "$(PY310)" ]; then echo "no Python 3.10 found: pymesos tests will be skipped"; \
	else $(PY310) -m venv $(VENV310) && \
	     $(VENV310)/bin/pip install --quiet --upgrade pip && \
	     $(VENV310)/bin/pip install --quiet -e '.[test,pymesos]' && touch $@; fi

# Everything under the default Python, then the pymesos driver's suite under Python 3.10.
test: install install310
	SCALE_TEST_PYTHON310=$$( [ -x $(VENV310)/bin/python ] && echo $(VENV310)/bin/python ) \
		$(VENV)/bin/python -m pytest $(PYTEST_ARGS)
	@if [ -x $(VENV310)/bin/python ]; then \
		echo "== pymesos driver suite under Python 3.10"; \
		$(VENV310)/bin/python -m pytest tests/pymesos $(PYTEST_ARGS); \
	else echo "== no Python 3.10: pymesos driver suite skipped"; fi

demo: install
	$(VENV)/bin/scale-scheduler demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	@# mypy cannot follow the editable install's import hook: mirror the installed layout
	rm -rf build/typecheck && mkdir -p build/typecheck/scale_scheduler
	for d in daemon api state simulator; do ln -s ../../../$$d build/typecheck/scale_scheduler/$$d; done
	MYPYPATH=build/typecheck $(VENV)/bin/python -m mypy --namespace-packages \
		-p scale_scheduler.daemon -p scale_scheduler.api -p scale_scheduler.state \
		-p scale_scheduler.simulator

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Benchmarks (bench/README.md): the full run rewrites bench/RESULTS.md (about 8 minutes);
# the quick run (about a minute) writes bench/out/RESULTS-quick.md and asserts nothing.
bench: install install310
	$(VENV)/bin/python -m bench

bench-quick: install install310
	$(VENV)/bin/python -m bench --quick

clean:
	rm -rf $(VENV) $(VENV310) build *.egg-info .pytest_cache .ruff_cache
