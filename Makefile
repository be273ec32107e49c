# Two commands do everything on a fresh machine: `make test` and `make parity`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Quiet TensorFlow's start-up chatter; parity must hold with oneDNN on or off, reports say which.
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test parity weights bench fuzz zoo train-demo clean

install: $(STAMP)

# The stamp makes a second run start at once; editing pyproject.toml reinstalls.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[keras,dev]'
	touch $@

# Whole test files go to TEST_WORKERS processes (pytest-xdist, --dist loadfile: a file's module fixtures
# are built once, in one worker). Two use this 2-core machine; TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

parity: $(STAMP)
	$(PY) -m parity run

weights: $(STAMP)
	$(PY) -m keras_ref.export $(if $(MODELS),--models '$(MODELS)') $(if $(DATA),--data '$(DATA)')

# Every keras.applications model (random weights, offline), per-layer parity from .keras and .h5:
# reports/zoo.md and reports/zoo.json. MODELS='ResNet*,VGG16' picks some; builds are cached in reports/zoo_models/.
zoo: $(STAMP)
	$(PY) -m parity.zoo $(if $(MODELS),--models '$(MODELS)') $(if $(JOBS),--jobs $(JOBS))

bench: $(STAMP)
	$(PY) -m parity.bench

# The hostile-input fuzzer: 2,000 API cases and 60 through `parity check`, one table row per class.
fuzz: $(STAMP)
	$(PY) -m parity.fuzz --cases $(or $(CASES),2000) --cli $(or $(CLI),60)

# Training in NumPy, the student's way: the digits CNN and a small captioner trained from one seeded
# initialization in scratch and in Keras on the same batches; metrics side by side in reports/train_demo.md
# (and in make parity's report). A few minutes; QUICK=1 runs the reduced configuration of the tests.
train-demo: $(STAMP)
	$(PY) -m parity.train_demo $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) reports .pytest_cache .hypothesis build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
