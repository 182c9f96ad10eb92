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

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(OUTPUT)
