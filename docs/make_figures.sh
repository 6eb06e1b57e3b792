#!/usr/bin/env bash
# Regenerates the README's figures (docs/images/*.png) from two 60-epoch runs on the built-in
# 8x8 digits (latent 8, and latent 2 for the 2-D map); about two minutes on 2 CPU cores.
#   bash docs/make_figures.sh [RUNS_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs/docs}"
img=docs/images
vaelab train --data digits --epochs 60 --runs-dir "$runs" --name digits --overwrite --quiet
vaelab train --data digits --epochs 60 --latent-dim 2 --runs-dir "$runs" --name digits-2d \
  --overwrite --quiet
run="$runs/digits"
vaelab interpolate "$run" --from 0 2 4 --to 1 3 5 --steps 10 --method slerp --out "$img/interpolate.png"
vaelab arithmetic "$run" --from-class 1 --to-class 7 --scale 1.5 --out "$img/arithmetic.png"
vaelab traverse "$run" --dims top --range 3 --steps 9 --out "$img/traverse.png"
vaelab latent "$run" --method tsne --out "$img/latent.png"
vaelab latent "$runs/digits-2d" --out "$img/latent-2d.png"
vaelab inpaint "$run" --mask right -n 8 --out "$img/inpaint.png"
vaelab denoise "$run" --noise saltpepper:0.2 --out "$img/denoise.png"
vaelab train --data digits --family m2 --labels 50 --epochs 30 --runs-dir "$runs" --name m2 \
  --overwrite --quiet
vaelab analogies "$runs/m2" -n 6 --out "$img/analogies.png"
vaelab compare-latent --data digits --epochs 10 --runs-dir "$runs" --out "$img/compare-latent.png"
