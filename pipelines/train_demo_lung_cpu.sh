#!/usr/bin/env bash
# How medreg/weights/demo-lung.safetensors was trained (the 2-core development machine, no GPU,
# 2026-11-26): generate + preprocess demo-lung, then configs/demo-lung.yaml as it is (4 mm network
# grid, 900 steps, cosine schedule from lr 1e-3); the best checkpoint on 2 held-out training pairs
# is shipped. The test pairs are used for neither training nor selection.
# Measured: see the README (Results, demo-lung).
set -euo pipefail
OUT=${1:-runs/demo-lung-retrain}
DEVICE=${DEVICE:-auto}
medreg preprocess --dataset demo-lung --out "$OUT/preprocessed" --workers "${WORKERS:-2}"
medreg train --dataset demo-lung --data "$OUT/preprocessed" --out "$OUT/run" --device "$DEVICE"
echo "best checkpoint: $OUT/run/checkpoints/best/model.safetensors"
