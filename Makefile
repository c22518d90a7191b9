# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
# Each creates the virtual environment it needs. TORCH pins the CPU wheel that lies on the build machines' disk;
# on a CUDA machine run e.g. `make demo TORCH=torch` to take your platform's default build instead.
VENV  ?= .venv
PY    := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: demo test clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/scalelens demo --out scalelens-demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) scalelens-demo
