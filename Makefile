# Two entry points for a fresh machine: `make demo` (set up + run the embedded study) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.nnkscope-installed

.PHONY: demo test docs lint bench clean

# torch==2.13.0 is installed first and on its own: that version is on local disk; any other would pull GBs of CUDA.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,torch,data,report,studies,dask,text,lightning,huggingface,docs,umap]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nnkscope demo --out demo-run

test: $(STAMP)
	$(PY) -m ruff check src tests bench examples
	@$(PY) -m pytest -q; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is missing" >&2; exit 1; fi; exit $$rc

# the documentation site into site/; --strict: a broken link or reference, or a docstring it cannot parse, fails it
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(PY) bench/nnk_graph.py

clean:
	rm -rf $(VENV) demo-run demo-out .pytest_cache site
