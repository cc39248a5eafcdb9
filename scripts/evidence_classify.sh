#!/usr/bin/env bash
# Evidence for counterfactual augmentation (issue 11): frozen-encoder probes and end-to-end fine-tuning.
#
#   PARTS="probe curve finetune" bash scripts/evidence_classify.sh      # all three (hours on 2 CPU cores)
#
# probe:    all-MiniLM-L6-v2 + logistic regression on CAD IMDb orig/train; originals only vs + automatic
#           counterfactuals (polarity, and the old generic rules) vs + human CAD; eval on CAD orig/dev, the
#           human counterfactuals new/dev, and cross-domain SST-2 dev/test, MR, CR.
# curve:    few-label curve on SST-2 train (class-balanced subsets, $CURVE_REPEATS seeds), with and without
#           counterfactuals; eval on SST-2 dev/test and CAD orig/new dev (cross-domain).
# finetune: encoder + linear head on CAD orig/train, none / counterfactual / human, $FT_SEEDS seeds, the same
#           step budget for every run; eval on CAD orig/dev and new/dev.
# Env: DATA (../shared/data/text), OUT (runs/evidence_classify), CACHE ($OUT/cache), PARTS, CURVE_SIZES,
# CURVE_REPEATS, FT_SEEDS, FT_STEPS, FT_BATCH, FT_LR, FT_MAX_LENGTH, THREADS, CPU (finetune on CPU: true),
# EXTRA (more flags for every run).
# Re-running continues: finished finetune runs are kept, interrupted ones resume from their last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
DATA="${DATA:-../shared/data/text}"; OUT="${OUT:-runs/evidence_classify}"; CACHE="${CACHE:-$OUT/cache}"
PARTS="${PARTS:-probe curve finetune}"; THREADS="${THREADS:-2}"; EXTRA="${EXTRA:-}"
CURVE_SIZES="${CURVE_SIZES:-20,50,100,200,500,1000}"; CURVE_REPEATS="${CURVE_REPEATS:-5}"
FT_SEEDS="${FT_SEEDS:-0 1 2}"; FT_STEPS="${FT_STEPS:-100}"; FT_BATCH="${FT_BATCH:-16}"; FT_LR="${FT_LR:-3e-5}"
FT_MAX_LENGTH="${FT_MAX_LENGTH:-256}"
export OMP_NUM_THREADS="$THREADS"
CAD="$DATA/cad/sentiment"; SE="$DATA/senteval"; PAIRED="$CAD/combined/paired/train_paired.tsv"
mkdir -p "$OUT"
run() { echo "+ $*" >&2; nice -n 5 python "$@" --cache-dir "$CACHE" --progress false $EXTRA; }
continue_flag() { [ -f "$1/config.json" ] && echo --resume || echo; }

for part in $PARTS; do
  case "$part" in
    probe)
      run tasks/classify.py --mode probe --train "$CAD/orig/train.tsv" --repeats 3 --overwrite \
        --eval "orig_dev=$CAD/orig/dev.tsv,cad_dev=$CAD/new/dev.tsv,sst2_dev=$SE/SST/binary@dev,sst2_test=$SE/SST/binary@test,mr=$SE/MR,cr=$SE/CR" \
        --augment "none,counterfactual,counterfactual:strategy=rules,human:$PAIRED" --out-dir "$OUT/cad_probe" ;;
    curve)
      run tasks/classify.py --mode probe --train "$SE/SST/binary" --train-size "$CURVE_SIZES" --repeats "$CURVE_REPEATS" \
        --eval "sst2_dev=$SE/SST/binary@dev,sst2_test=$SE/SST/binary@test,cad_orig_dev=$CAD/orig/dev.tsv,cad_new_dev=$CAD/new/dev.tsv" \
        --augment none,counterfactual --overwrite --out-dir "$OUT/sst2_curve" ;;
    finetune)
      for seed in $FT_SEEDS; do
        for aug in none counterfactual "human:$PAIRED"; do
          name="ft_${aug%%:*}_s$seed"; dir="$OUT/$name"
          grep -qs "\"stopped_early\": false" "$dir/results.json" && { echo "$name: done" >&2; continue; }
          run tasks/classify.py --mode finetune --train "$CAD/orig/train.tsv" --augment "$aug" --seed "$seed" \
            --eval "orig_dev=$CAD/orig/dev.tsv,cad_dev=$CAD/new/dev.tsv" --steps "$FT_STEPS" --batch-size "$FT_BATCH" \
            --lr "$FT_LR" --warmup-steps $((FT_STEPS / 10)) --max-length "$FT_MAX_LENGTH" --log-every 10 \
            --checkpoint-every 50 --cpu "${CPU:-true}" --out-dir "$dir" $(continue_flag "$dir")
        done
      done
      python - "$OUT" <<'EOF'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1]); rows = {}
for res in sorted(out.glob("ft_*/results.json")):
    r = json.loads(res.read_text())["rows"][0]
    rows.setdefault(r["augment"].split(":")[0], []).append(r)
lines = ["| augment | seeds | originals | added | CAD orig/dev acc | CAD new/dev (human CF) acc |", "|---|---|---|---|---|---|"]
for aug, rs in rows.items():
    def ms(key):
        v = [x[key] for x in rs]
        return f"{statistics.mean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0:.2f}"
    lines.append(f"| {aug} | {len(rs)} | {rs[0]['n_original']} | {statistics.mean(x['n_added'] for x in rs):.0f} | {ms('acc_orig_dev')} | {ms('acc_cad_dev')} |")
(out / "finetune_summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
      ;;
    *) echo "unknown part $part (probe, curve, finetune)" >&2; exit 2 ;;
  esac
done
