# The two commands a newcomer runs; each sets up what it needs in .venv first.
#   make demo   run the main job on the bundled sample
#   make test   run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_DATA := ../shared/data/real
OUTPUT := output

.PHONY: demo test benchmark clean

$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: $(BIN)/.installed
	$(BIN)/deepdiag info $(SHARED_DATA)/totalseg/abdomen_ct_dicom
	$(BIN)/deepdiag phantom -o $(OUTPUT)/phantom --cases 1 --seed 4 --nodules 2 3 --diameter 8 25 --preview
	@echo "Synthetic chest CT, truth and preview written under $(OUTPUT)/phantom/"

benchmark: $(BIN)/.installed
	$(BIN)/python benchmarks/phantom_benchmark.py

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(OUTPUT)
