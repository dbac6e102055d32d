# Thin, identical targets locally and in CI. `make demo` and `make test` create or refresh the
# virtualenv themselves, so each is one command on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint format bench bench-peers bench-memory docs services clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m xcomm demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check xcomm tests benchmarks docs/examples
	$(PY) -m ruff format --check xcomm tests benchmarks docs/examples
	$(PY) -m mypy --strict xcomm

format: $(STAMP)
	$(PY) -m ruff check --fix xcomm tests benchmarks docs/examples
	$(PY) -m ruff format xcomm tests benchmarks docs/examples

# Postfix's smtp-sink/smtp-source, extracted from the Debian package (no MTA is installed).
services:
	bash benchmarks/install_postfix_tools.sh

# The Python peers bench_bulk, bench_imap and bench_http compare xcomm with. Not in
# pyproject.toml, not even as an extra: CI installs '.[all,dev]' and must stay lean, and a
# published `xcomm[bench]` would offer users other projects' libraries. Only `make bench`
# installs them, into the same virtualenv; the stamp is redone when the virtualenv is.
# (Quoted: an unquoted `>=` is a shell redirection.)
BENCH_PEERS := 'fastapi-mail>=1.6.8' 'apprise>=2.2.0' 'imap-tools>=1.16.0' 'twilio>=9.13'

$(VENV)/.bench-peers: $(STAMP)
	$(PY) -m pip install -q $(BENCH_PEERS)
	touch $@

bench-peers: $(VENV)/.bench-peers

bench: $(STAMP) services bench-peers
	$(PY) -m benchmarks.bench_limiter
	$(PY) -m benchmarks.bench_mime
	$(PY) -m benchmarks.bench_smtp
	$(PY) -m benchmarks.bench_http
	$(PY) -m benchmarks.bench_outbox
	$(PY) -m benchmarks.bench_bulk
	$(PY) -m benchmarks.bench_rate
	$(PY) -m benchmarks.bench_imap

# Peak RSS streaming 100k and 1M recipients (about 2.5 min with --no-smtp, 5.5 min through smtp-sink).
bench-memory: $(STAMP) services
	$(PY) -m benchmarks.bench_memory --no-smtp

docs: $(STAMP)
	$(PY) -m pytest -q tests/test_docs.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist *.egg-info
