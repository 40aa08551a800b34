#!/usr/bin/env bash
# How the shipped medreg/weights/demo-brain.safetensors got its global stage (the 2-core development
# machine, no GPU, 2026-12-01): the GPU-trained model (pipelines/train_demo_brain_gpu.sh, trained without
# motions) fine-tuned for 700 steps with the demo-brain preset's random world motions and the affine global
# stage before the network (global_stage.mode: affine, train.augmentation.motion.enabled: true), a cosine
# schedule from lr 1e-4. The best checkpoint on the 2 held-out training pairs (validation TRE through the
# global stage) is shipped; the test pairs are used for neither. Measured: see the README (The shipped model).
set -euo pipefail
OUT=${1:-runs/demo-brain-finetune}
DEVICE=${DEVICE:-auto}
INIT=${INIT:-medreg/weights/demo-brain-gpu.safetensors}
medreg preprocess --dataset demo-brain --out "$OUT/preprocessed" --workers "${WORKERS:-2}"
medreg train --dataset demo-brain --data "$OUT/preprocessed" --out "$OUT/run" --device "$DEVICE" --init "$INIT" \
  --set train.steps=700 --set train.lr=1e-4 --set optim.schedule=cosine --set train.val_every=100 \
  --set train.log_every=20
echo "best checkpoint: $OUT/run/checkpoints/best/model.safetensors"
