# Each target sets up .venv itself; nothing is downloaded at run time (only package installs).
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= ../shared/datasets

.PHONY: venv demo test test-slow lint bench results table3 clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/faceobf demo --root $(DATA) --out out/demo

test: venv
	$(BIN)/pytest -q

test-slow: venv
	$(BIN)/pytest -q -m slow

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy src/faceobfuscator
	$(BIN)/lint-imports

bench: venv
	mkdir -p results/bench
	$(BIN)/faceobf bench transform --root $(DATA) --out results/bench/transform.json
	$(BIN)/faceobf bench security --out results/bench/security.json
	$(BIN)/faceobf bench training --out results/bench/training.json
	$(BIN)/faceobf bench server --duration 15 --out results/bench/server.json

# about 40 minutes on 2 idle CPU cores (bf16): LFW, CFP-FF and CFP-FP folds 6-10 for the current models
# (the first round's MobileFaceNets: results/verification-mobilefacenet.*)
results: venv cache/aligned/lfw/summary.json cache/aligned/cfp/summary.json
	$(BIN)/faceobf eval results --models models/sface-arcface models/sface-arcface-fd models/sface-faceobfuscator --bf16 --seed 0

# the paper's Table 3 for every model directory under models/ (accuracy, TAR, storage, client
# time; leakage from results/table4.json when present): about 13 minutes a model on 2 idle cores
table3: venv cache/aligned/lfw/summary.json cache/aligned/cfp/summary.json
	$(BIN)/faceobf eval table3 --bf16 --seed 0

# aligned crops (git-ignored): LFW about 5 minutes, CFP about 20 on 2 cores
cache/aligned/%/summary.json: | venv
	$(BIN)/faceobf data prepare $* --root $(DATA) --out cache/aligned/$*

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
