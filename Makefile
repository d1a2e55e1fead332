# lorakit: two commands do all the set-up.
#   make lab    create .venv if missing, install lorakit with everything the course uses, open JupyterLab
#   make test   lint and format checks, then the whole suite (unit tests + every notebook through
#               nbval) in the `ci` preset, offline
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and pinned, so that pip never resolves a multi-GB build on its own.
# Override for your machine, e.g. `make lab TORCH_SPEC="torch==2.13.0 --index-url <your index>"`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.lorakit-installed

.PHONY: lab test install lint student book

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[all]"
	@touch $(STAMP)

install: $(STAMP)

lab: $(STAMP)
	@flags=""; [ "$$(id -u)" = 0 ] && flags="--allow-root"; \
	if [ -z "$$DISPLAY" ] && [ "$$(uname)" = "Linux" ]; then \
		echo "No display: open the URL printed below in your browser."; \
		$(VENV)/bin/jupyter lab --no-browser $$flags chapters/; \
	else $(VENV)/bin/jupyter lab $$flags chapters/; fi

test: $(STAMP)
	$(VENV)/bin/ruff check lorakit tests
	$(VENV)/bin/ruff format --check lorakit tests
	LORAKIT_PRESET=ci HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check lorakit tests

student: $(STAMP)
	$(PY) -m lorakit.exercises student chapters/ --out student/

# The course as a static web book in build/book/ (open build/book/index.html; no network needed).
book: $(STAMP)
	$(PY) -m book --out build/book
