# lmbook: `make book` builds the website, `make test` checks everything. See README.md.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
JOBS   ?= auto
STAMP  := $(VENV)/.lmbook-installed
BOOK_FLAGS := -W -n --keep-going

.PHONY: install book pdf test unit notebooks html browser execute clean help

help:
	@echo "make book       build the website into _build/html"
	@echo "make test       unit tests, every notebook re-executed and compared (nbval), the book build, browser tests"
	@echo "make pdf        print the built site into _build/pdf/lmbook.pdf"
	@echo "make execute    re-run every chapter notebook on this CPU and store its outputs"
	@echo "make clean      remove _build"

install: $(STAMP)

$(STAMP): pyproject.toml requirements-lock.txt tools/setup_env.sh
	PYTHON=$(PYTHON) tools/setup_env.sh $(VENV)
	@touch $@

html: install
	$(PY) tools/build_book.py $(BOOK_FLAGS)

book: html
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# One PDF of the whole site, printed by headless Chromium (math and widgets rendered).
pdf: html
	tools/ensure_chromium.sh
	$(PY) tools/print_book.py

unit: install
	$(PY) -m pytest -n $(JOBS) --dist loadfile tests -m "not browser"

notebooks: install
	$(PY) -m pytest -n $(JOBS) --dist loadfile --nbval chapters

browser: html
	tools/ensure_chromium.sh
	$(PY) -m pytest tests/browser -m browser

# One pytest run for unit tests and notebooks (they share the workers), then the site and the
# browser suite on it.
test: install
	$(PY) -m pytest -n $(JOBS) --dist loadfile --nbval tests chapters -m "not browser"
	$(MAKE) --no-print-directory browser

execute: install
	$(PY) tools/execute_notebooks.py $(NB)

clean:
	rm -rf _build
