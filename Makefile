# Two commands on a fresh machine:  make demo  |  make test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test test-all demo demo-lung mnist mnist-vs-icon clean

DEMO   ?= runs/demo
MODEL  ?= medreg/weights/demo-brain.safetensors
LUNG_MODEL ?= medreg/weights/demo-lung.safetensors
THREADS ?= 2

setup: $(STAMP)

# Re-install only when the project metadata changes; repeated runs reuse the venv.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,baselines]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m ''

# The main job: generate demo-brain from the registry-shipped MNI152 template, preprocess it,
# and evaluate the shipped model (its affine global stage, then the network alone and with the default
# instance-optimisation preset per pair) beside ANTs SyNQuick, elastix and no registration on the 6 test
# pairs (the held-out subject S1).
# Reruns resume (finished cases and pairs are skipped).
demo: setup
	$(VENV)/bin/medreg preprocess --dataset demo-brain --out $(DEMO)/preprocessed --workers $(THREADS)
	$(VENV)/bin/medreg evaluate --dataset demo-brain --data $(DEMO)/preprocessed --model $(MODEL) \
	    --io-preset default --baseline ants:syn-quick --baseline elastix --baseline none \
	    --threads $(THREADS) --out $(DEMO)/evaluation
	@echo
	@echo "report: $(DEMO)/evaluation/report.html"
	@echo "retrain the model (GPU: ~3 min; CPU: DEVICE=cpu, hours):  pipelines/train_demo_brain_gpu.sh $(DEMO)/retrain"
	@echo "then fine-tune it with the global stage (CPU: ~35 min):  pipelines/finetune_demo_brain_global.sh $(DEMO)/finetune"
	@echo "then on the seven training brains (CPU: ~37 min; the shipped model):  DATA=$(DEMO)/preprocessed INIT=$(DEMO)/finetune/run/checkpoints/best pipelines/finetune_demo_brain_subjects.sh $(DEMO)/subjects"
	@echo "or a short CPU run:  $(VENV)/bin/medreg train --dataset demo-brain --data $(DEMO)/preprocessed --out $(DEMO)/run --max-steps 200"

# The same on demo-lung (real chest CTs with synthetic breathing motion; 4 test pairs of the held-out
# patient); the default preset's last 6 instance-optimisation steps run on the preprocessed CT's own
# grid, finer than the model's 4 mm grid.
demo-lung: setup
	$(VENV)/bin/medreg preprocess --dataset demo-lung --out $(DEMO)-lung/preprocessed --workers $(THREADS)
	$(VENV)/bin/medreg evaluate --dataset demo-lung --data $(DEMO)-lung/preprocessed --model $(LUNG_MODEL) \
	    --io-preset default --baseline ants:syn-quick --baseline elastix --baseline none \
	    --threads $(THREADS) --out $(DEMO)-lung/evaluation
	@echo
	@echo "report: $(DEMO)-lung/evaluation/report.html"

# The seed experiment: multistep MLP on MNIST fives, probed step by step on fives and sevens
# (3 training seeds x 60 s and 300 s of training; about 20 minutes on 2 cores).
mnist: setup
	$(PY) pipelines/mnist_mesaoptimizer.py --out runs/mnist-$$(date +%Y%m%d-%H%M%S)

# The same training in medreg and in icon_registration 1.1.9, side by side (about 7 minutes).
mnist-vs-icon: setup
	$(PY) -m pip install --quiet --no-deps icon_registration==1.1.9
	$(PY) pipelines/mnist_vs_icon.py --seconds 60 --rounds 2 --lazy --out runs/mnist-vs-icon-$$(date +%Y%m%d-%H%M%S)

clean:
	rm -rf $(VENV) runs
