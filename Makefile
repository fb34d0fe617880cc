# lmbook: `make book` builds the website, `make test` checks everything. See README.md.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
JOBS   ?= auto
STAMP  := $(VENV)/.lmbook-installed
BOOK_FLAGS := -W -n --keep-going

.PHONY: install book pdf test unit notebooks html browser execute clean help portable compat lab conda gpu-check-dry

help:
	@echo "make book       build the website into _build/html"
	@echo "make test       unit tests, every notebook re-executed and compared (nbval), the book build, browser tests"
	@echo "make pdf        print the built site into _build/pdf/lmbook.pdf"
	@echo "make execute    re-run every chapter notebook on this CPU and store its outputs"
	@echo "make lab        JupyterLab on chapters/ with the book's kernel (installs the lab extra)"
	@echo "make conda      the conda environment 'lmbook' (environment.yml), data packages included"
	@echo "make portable   unit tests and notebooks with torch limited to baseline CPU kernels"
	@echo "make compat     unit tests against the oldest versions pyproject.toml allows (_build/venv-floor)"
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
	$(PY) -m pytest -n $(JOBS) --dist loadfile --nbval tests chapters -m "not browser" --durations=15
	$(MAKE) --no-print-directory browser

execute: install
	$(PY) tools/execute_notebooks.py $(NB)

# The suite as an older or different x86 processor computes it: torch's CPU kernels limited to the
# baseline instruction set (no AVX2/AVX-512) and MKL in its reproducible mode. Notebook kernels
# inherit the variables. Narrow it with PORTABLE="tests/test_models.py chapters/03_attention.ipynb".
PORTABLE ?= tests chapters
portable: install
	ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE \
	  $(PY) -m pytest -n $(JOBS) --dist loadfile --nbval $(PORTABLE) -m "not browser"

# The unit tests against the floors of pyproject.toml, in their own environment (tools/compat.sh).
compat:
	PYTHON=$(PYTHON) tools/compat.sh _build/venv-floor

# JupyterLab on the chapters with the book's environment: the `lab` extra (pinned), and the
# kernel "lmbook" (this .venv's Python) registered for the user, so other Jupyters offer it too.
lab: install
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements-lock.txt -e ".[lab]"
	$(PY) -m ipykernel install --user --name lmbook --display-name "Python (lmbook .venv)"
	$(VENV)/bin/jupyter lab --notebook-dir=chapters $(LAB_ARGS)

# conda instead of .venv: environment.yml, then the data packages with --no-deps (a conda pip
# section cannot say --no-deps for some packages), then the kernel. CONDA=mamba works too.
CONDA ?= conda
conda:
	CONDA=$(CONDA) tools/conda_env.sh

# benchmarks/gpu_check.sh on this machine's CPU, a few steps each: checks the script itself.
gpu-check-dry: install
	PYTHON=$(PY) benchmarks/gpu_check.sh --dry-run

clean:
	rm -rf _build
