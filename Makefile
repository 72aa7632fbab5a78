# The two quick-start commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test generated

$(BIN)/symgraph: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '.[test,examples]'
	touch $@

# Compile the digits MLP to NumPy and to C and train both on scikit-learn's
# bundled digits: the same seed gives the same losses from either trainer.
DIGITS := --data examples/digits/data/train --val examples/digits/data/val
demo: $(BIN)/symgraph
	$(BIN)/python examples/digits/prepare.py
	$(BIN)/symgraph compile examples/digits_mlp.yaml --target numpy
	$(BIN)/python generated/digits_mlp/numpy/train.py $(DIGITS)
	$(BIN)/symgraph compile examples/digits_mlp.yaml --target c
	$(MAKE) -s -C generated/digits_mlp/c
	generated/digits_mlp/c/train $(DIGITS)

test: $(BIN)/symgraph
	$(BIN)/python -m pytest -q

# Regenerate the committed trainers of every example.
generated: $(BIN)/symgraph
	$(BIN)/python -m symgraph.regenerate
