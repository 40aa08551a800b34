#!/usr/bin/env bash
# demo-lung at 2 mm (the shipped lung model works at 4 mm, which limits its accuracy: README,
# Results, demo-lung). Same config as medreg/configs/demo-lung.yaml with the network grid at 2 mm.
# NOT YET RUN on a GPU. Measured on the 2-core CPU (medreg bench train --dataset demo-lung
# --set 'preprocess.spacing=[2.0,2.0,2.0]' --shape 192 160 160): 0.071 steps/s, 3.8 GiB,
# i.e. about 4 hours for 1000 steps, so this is meant for a GPU (DEVICE=cuda, the default here).
set -euo pipefail
OUT=${1:-runs/demo-lung-2mm}
DEVICE=${DEVICE:-cuda}
medreg preprocess --dataset demo-lung --out "$OUT/preprocessed" --workers "${WORKERS:-8}"
medreg train --dataset demo-lung --data "$OUT/preprocessed" --out "$OUT/run" --device "$DEVICE" \
  --set 'preprocess.spacing=[2.0,2.0,2.0]' --set train.steps="${STEPS:-3000}" --set optim.schedule=cosine \
  --set train.val_every=250 --set train.log_every=50
echo "best checkpoint: $OUT/run/checkpoints/best/model.safetensors"
