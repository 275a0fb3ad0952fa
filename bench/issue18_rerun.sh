#!/usr/bin/env bash
# Issue 18's reruns at the experiment's scale, each stage cut at a shared deadline so that what
# finished is kept (made for a lent GPU; runs anywhere, for hours on 2 CPU cores). Every stage
# uses 20,000 train / 5,000 held-out images of CIFAR-10 (the 25,000-image class-balanced
# subset, held-out 0.2), at least 15 epochs of proxy training and the full 10,000-image test set:
#   recipe    plain ResNet-20 against the default supernets (widths only as `slimnas run` trains
#             it, and widths + depth as `slimnas train` does), 15 epochs;
#   autoslim  configs/autoslim_resnet20_cifar10.toml end to end (already at that scale);
#   joslim    configs/joslim_resnet20_cifar10.toml: `slimnas search` + `slimnas report` (already
#             at that scale; a slimmable-net comparison, no retraining);
#   tas       configs/tas_teacher_resnet20_cifar10.toml (the KD teacher), then
#             configs/tas_resnet20_cifar10.toml (both already at that scale: 15-epoch searches,
#             2,500 + 2,500 held-out images to score and report, KD retraining with 3 seeds);
#   proxyless configs/proxyless_cifar10.toml with this machine's latency table (onnxruntime, 1
#             thread, as the config), a 15-epoch warm-up and 15-epoch searches, 3 seeds;
#   proxyless_band  the same with the band loss, from a copy of proxyless's warm-up (after it).
# The proxyless config holds its rerun's settings (docs/results/proxyless_cifar10.md); the stage
# adds only the latency table's path.
#
#   python3 ../shared/data/cifar10.py data/cache
#   PY=.venv/bin/python OUT=runs/issue18 SECONDS_LEFT=36000 bash bench/issue18_rerun.sh
#   STAGES="tas proxyless" ... bash bench/issue18_rerun.sh      # some stages, in that order
#
# Writes OUT/log.txt, OUT/recipe.jsonl (the recipe rows), OUT/<stage>.log and OUT/<stage>.tgz per
# run dir (without ONNX files, checkpoints and exported weights: enough to report or resume with
# --resume; a retraining counts as done only with its model.safetensors, so those stay in).
# Each stage gets the time left divided by the stages still to come (the recipe stage 2/5 of it).
# SMOKE=1 cuts every stage to a few hundred images and one epoch (a check of the script).
# RESUME=1 continues the proxyless stage's run dir (`slimnas run --resume`) with the latency table
# it was started on, e.g. in a later session: RESUME=1 STAGES=proxyless ... bash bench/issue18_rerun.sh
# BAND_SET adds overrides to the proxyless_band stage, e.g. one budget only:
#   BAND_SET='--set search.budgets=["latency_ms<=55%"]' STAGES=proxyless_band ... bash bench/issue18_rerun.sh
set -u
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/issue18}
RUNS=${RUNS:-runs}  # where the stages' run dirs go (e.g. RUNS=/tmp/smoke with SMOKE=1)
SECONDS_LEFT=${SECONDS_LEFT:-36000}
STAGES=${STAGES:-recipe autoslim joslim tas proxyless}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
END=$(($(date +%s) + SECONDS_LEFT))
left() { echo $((END - $(date +%s))); }
say() { echo "[$(date -u +%H:%M:%S) left $(left)s] $*" | tee -a "$LOG"; }

SCALE=(--set data.max_train_images=25000 --set data.heldout=0.2)
RECIPE=(--set data.source=cifar10 --set data.root=data/cache "${SCALE[@]}" --set train.epochs=15)
TEACHER_DIR=$RUNS/issue18_tas_teacher
TAS_SET=(--set retrain.teacher=$TEACHER_DIR)
PROXYLESS_SET=(--set search.latency_table=$RUNS/issue18_proxyless_latency_table.json)
SMALL=()
if [ "${SMOKE:-0}" = 1 ]; then
  RECIPE+=(--set data.max_train_images=300 --set data.max_test_images=200 --set train.epochs=1)
  SMALL=(--set data.max_train_images=300 --set data.max_test_images=200 --set supernet.epochs=1
         --set retrain.epochs=1 --set retrain.seeds=0 --set search.score_images=40
         --set search.report_images=20 --set search.score_batch=40)
  PROXYLESS_SMOKE=(--set search.proxyless.warmup_epochs=1 --set search.proxyless.epochs=1
                   --set data.max_train_images=1400)  # a held-out batch for arch steps
fi
declare -A RUN_DIR=([autoslim]=$RUNS/issue18_autoslim [joslim]=$RUNS/issue18_joslim
                    [tas]=$RUNS/issue18_tas [proxyless]=$RUNS/issue18_proxyless)

pack() {  # pack <stage> <run dir>...
  local stage=$1; shift
  grep -v "it/s\]\|s/it\]" "$OUT/$stage.log" | tail -40 >> "$LOG"
  tar czf "$OUT/$stage.tgz" --exclude='*.onnx' --exclude='ckpt-*' --exclude=tensorboard \
    --exclude='*/exports/*/model.safetensors' "$@"
  say "packed $stage: $(du -h "$OUT/$stage.tgz" | cut -f1)"
}

stage_recipe() {
  timeout $(($1 * 2 / 5)) $PY bench/supernet_recipe.py \
    --variants plain nodistill_width_sw nodistill_sw "${RECIPE[@]}" --out "$OUT/recipe.jsonl" \
    2>&1 | tee -a "$LOG"
  return "${PIPESTATUS[0]}"
}

stage_autoslim() {
  local dir=${RUN_DIR[autoslim]} extra=()
  [ "${SMOKE:-0}" = 1 ] && extra=(--set search.random.samples=4 --set search.evolution.population=4
                                  --set search.evolution.generations=2)
  timeout "$1" $PY -m slimnas.cli run configs/autoslim_resnet20_cifar10.toml --set run.dir=$dir \
    "${SMALL[@]}" "${extra[@]}" > "$OUT/autoslim.log" 2>&1
  local rc=$?
  pack autoslim "$dir"
  return $rc
}

stage_joslim() {
  local dir=${RUN_DIR[joslim]} extra=() rc
  [ "${SMOKE:-0}" = 1 ] && extra=(--set search.random.samples=4 --set search.joslim.visits=8
                                  --set search.joslim.refresh_images=40)
  local end=$(($(date +%s) + $1))
  timeout "$1" $PY -m slimnas.cli search configs/joslim_resnet20_cifar10.toml --set run.dir=$dir \
    "${SMALL[@]}" "${extra[@]}" > "$OUT/joslim.log" 2>&1 &&
    timeout $((end - $(date +%s))) $PY -m slimnas.cli report configs/joslim_resnet20_cifar10.toml \
      --set run.dir=$dir "${SMALL[@]}" "${extra[@]}" >> "$OUT/joslim.log" 2>&1
  rc=$?
  pack joslim "$dir"
  return $rc
}

stage_tas() {
  local dir=${RUN_DIR[tas]} rc teacher=(--set run.dir=$TEACHER_DIR) extra=()
  if [ "${SMOKE:-0}" = 1 ]; then
    teacher+=(--set data.max_train_images=300 --set data.max_test_images=200 --set train.epochs=1)
    extra=(--set search.tas.epochs=1 --set search.tas_width.epochs=1  # TAS halves the split
           --set data.max_train_images=700)
  fi
  local end=$(($(date +%s) + $1))
  timeout "$1" $PY -m slimnas.cli train configs/tas_teacher_resnet20_cifar10.toml "${teacher[@]}" \
    > "$OUT/tas.log" 2>&1 &&
    timeout $((end - $(date +%s))) $PY -m slimnas.cli run configs/tas_resnet20_cifar10.toml \
      "${TAS_SET[@]}" --set run.dir=$dir "${SMALL[@]}" "${extra[@]}" >> "$OUT/tas.log" 2>&1
  rc=$?
  pack tas "$dir" "$TEACHER_DIR"
  return $rc
}

stage_proxyless() {
  local dir=${RUN_DIR[proxyless]} rc extra=()
  [ "${SMOKE:-0}" = 1 ] && extra=("${PROXYLESS_SMOKE[@]}")
  local end=$(($(date +%s) + $1)) table=$RUNS/issue18_proxyless_latency_table.json
  [ "${RESUME:-0}" = 1 ] && extra+=(--resume)
  if [ "${RESUME:-0}" = 1 ] && [ -f $table ]; then  # the run's budgets were set on this table
    echo "resuming $dir with $table" >> "$OUT/proxyless.log"
  else
    timeout "$1" $PY -m slimnas.cli latency-table configs/proxyless_cifar10.toml \
      "${PROXYLESS_SET[@]}" > "$OUT/proxyless.log" 2>&1
  fi &&
    timeout $((end - $(date +%s))) $PY -m slimnas.cli run configs/proxyless_cifar10.toml \
      "${PROXYLESS_SET[@]}" --set run.dir=$dir "${SMALL[@]}" "${extra[@]}" \
      >> "$OUT/proxyless.log" 2>&1
  rc=$?
  pack proxyless "$dir" $RUNS/issue18_proxyless_latency_table.json
  return $rc
}

stage_proxyless_band() {  # the same warm-up (copied from the proxyless stage's run) and
  # budgets, searched with the band loss (TAS's Eq. 8) instead of the paper's mul_log
  local dir=$RUNS/issue18_proxyless_band from=${RUN_DIR[proxyless]} rc extra=()
  [ "${SMOKE:-0}" = 1 ] && extra=("${PROXYLESS_SMOKE[@]}")
  if [ ! -f "$from/search/proxyless/warmup/final/supernet.json" ]; then
    say "proxyless_band needs the proxyless stage's warm-up in $from: run that stage first"
    return 2
  fi
  [ -f "$dir/config.json" ] && extra+=(--resume)
  local band_set=(); read -r -a band_set <<< "${BAND_SET:-}"
  mkdir -p "$dir/search/proxyless"
  [ -d "$dir/supernet" ] || cp -r "$from/supernet" "$dir/"
  [ -d "$dir/search/proxyless/warmup" ] || cp -r "$from/search/proxyless/warmup" "$dir/search/proxyless/"
  timeout "$1" $PY -m slimnas.cli run configs/proxyless_cifar10.toml "${PROXYLESS_SET[@]}" \
    --set search.proxyless.loss=band --set 'search.methods=["proxyless"]' --set run.dir=$dir \
    "${SMALL[@]}" "${band_set[@]}" "${extra[@]}" >> "$OUT/proxyless_band.log" 2>&1
  rc=$?
  pack proxyless_band "$dir"
  return $rc
}

say "stages: $STAGES; $(nproc) cores, torch $($PY -c 'import torch; print(torch.__version__, "cuda", torch.cuda.is_available())')"
read -r -a todo <<< "$STAGES"
for i in "${!todo[@]}"; do
  stage=${todo[$i]}
  if ! declare -F "stage_$stage" > /dev/null; then
    say "unknown stage '$stage': use recipe, autoslim, joslim, tas, proxyless or proxyless_band"; exit 2
  fi
  share=$(( ($(left) - 20) / (${#todo[@]} - i) ))
  [ "$stage" = recipe ] && share=$(($(left) - 20))  # the recipe stage takes 2/5 of the rest itself
  say "stage $stage ($share s)"
  "stage_$stage" "$share"
  say "stage $stage done (rc $?)"
done
