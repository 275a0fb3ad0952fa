#!/usr/bin/env bash
# Issue 18's reruns at the experiment's scale, in one go, each stage cut at a shared deadline so
# that what finished is kept (made for a lent GPU; runs anywhere, for hours on 2 CPU cores):
#   1. plain ResNet-20 against the default supernets (widths only as `slimnas run` trains it, and
#      widths + depth as `slimnas train` does) at configs/autoslim_resnet20_cifar10.toml's recipe:
#      20,000 train / 5,000 held-out images of CIFAR-10, 15 epochs, the full 10,000-image test set;
#   2. configs/autoslim_resnet20_cifar10.toml end to end (run dir resumable with --resume).
#
#   python3 ../shared/data/cifar10.py data/cache
#   PY=.venv/bin/python OUT=runs/issue18 SECONDS_LEFT=36000 bash bench/issue18_rerun.sh
#
# Writes OUT/log.txt, OUT/recipe.jsonl (stage 1 rows), OUT/autoslim.log and OUT/autoslim.tgz (the
# run dir without ONNX files, checkpoints and exported weights: enough to report or resume; a
# retraining counts as done only with its model.safetensors, so those stay in). SMOKE=1 cuts both
# stages to a few hundred images and one epoch (a five-minute check of the script).
set -u
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/issue18}
SECONDS_LEFT=${SECONDS_LEFT:-36000}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
END=$(($(date +%s) + SECONDS_LEFT))
left() { echo $((END - $(date +%s))); }
say() { echo "[$(date -u +%H:%M:%S) left $(left)s] $*" | tee -a "$LOG"; }

DATA=(--set data.source=cifar10 --set data.root=data/cache --set data.max_train_images=25000
      --set data.heldout=0.2 --set train.epochs=15)
RUN_DIR=runs/issue18_autoslim
RUN=(--set run.dir=$RUN_DIR)
if [ "${SMOKE:-0}" = 1 ]; then
  DATA+=(--set data.max_train_images=300 --set data.max_test_images=200 --set train.epochs=1)
  RUN+=(--set data.max_train_images=300 --set data.max_test_images=200 --set supernet.epochs=1
        --set retrain.epochs=1 --set retrain.seeds=0 --set search.random.samples=4
        --set search.evolution.population=4 --set search.evolution.generations=2
        --set search.score_images=40 --set search.report_images=20 --set search.score_batch=40)
fi

say "stage 1: plain vs supernets, $(nproc) cores, $($PY -c 'import torch; print(torch.__version__, torch.cuda.is_available())')"
timeout $(($(left) * 2 / 5)) $PY bench/supernet_recipe.py --variants plain nodistill_width_sw nodistill_sw \
  "${DATA[@]}" --out "$OUT/recipe.jsonl" 2>&1 | tee -a "$LOG"
say "stage 1 done (rc ${PIPESTATUS[0]})"

say "stage 2: slimnas run configs/autoslim_resnet20_cifar10.toml"
timeout $(($(left) - 20)) $PY -m slimnas.cli run configs/autoslim_resnet20_cifar10.toml "${RUN[@]}" \
  > "$OUT/autoslim.log" 2>&1
say "stage 2 done (rc $?)"
grep -v "it/s\]\|s/it\]" "$OUT/autoslim.log" | tail -40 >> "$LOG"
tar czf "$OUT/autoslim.tgz" --exclude='*.onnx' --exclude='ckpt-*' --exclude=tensorboard \
  --exclude="$RUN_DIR/exports/*/model.safetensors" "$RUN_DIR"
say "packed $(du -h "$OUT/autoslim.tgz" | cut -f1)"
