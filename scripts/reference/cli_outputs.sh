#!/usr/bin/env bash
# The CLI's outputs on the bundled data, with the checkout's path replaced by <repo>: what
# Tests/SluiceJobsTests/OutputsUnchangedTests compares against. The committed set
# (Tests/SluiceJobsTests/Fixtures/outputs-059dbf8) was made by the release build of commit 059dbf8, the
# last one before the contracts refactor, on this project's machine (x86-64-v3, OpenBLAS 0.3.21).
#   scripts/reference/cli_outputs.sh REPO OUT      (REPO: a checkout with a release build)
set -euo pipefail
repo=$1; out=$2; mkdir -p "$out"
sluice=$repo/.build/release/sluice
w=${SLUICE_LITE0_WEIGHTS:-$repo/.work/weights/efficientnet-lite0-57934424.pth}
home=$(mktemp -d); export SLUICE_HOME=$home
norm() { sed "s#$repo/#<repo>/#g"; }
cd "$repo"
"$sluice" models import "$w" --model efficientnet_lite0 >/dev/null
"$sluice" classify "$repo/assets/images" --top-k 5 --batch 1 --threads 1 2>/dev/null | norm > "$out/classify-images.jsonl"
"$sluice" classify "$repo/assets/images" --top-k 3 --batch 1 --threads 1 --out "$home/c.csv" 2>/dev/null; norm < "$home/c.csv" > "$out/classify-images.csv"
"$sluice" classify "$repo/assets/videos" --fps 2 --top-k 2 --batch 1 --threads 1 2>/dev/null | norm > "$out/classify-video.jsonl"
rm -rf .work/pipelines
for p in pipelines/*.yaml; do "$sluice" run "$p" --fresh --threads 1 >/dev/null 2>&1; done
for f in .work/pipelines/*.jsonl .work/pipelines/*.csv; do norm < "$f" > "$out/run-$(basename "$f")"; done
"$sluice" infer --model efficientnet_lite0 --weights "$w" --input Tests/SluiceModelsTests/Fixtures/efficientnet_lite0/input.npy --output "$out/infer-logits.npy" --threads 1
rm -rf "$home"
