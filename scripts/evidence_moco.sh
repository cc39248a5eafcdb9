#!/usr/bin/env bash
# Evidence: MoCo-v2 vs MoCo-v2 + jigsaw NDA negatives on CIFAR-10 (JPEG re-encoded), 2 seeds each, same budget
# (same steps, batch, schedule), kNN and linear-probe top-1 on the 10,000-image test split.
#
# GPU (one H100, <= 8 min wall-clock): the 4 runs share the GPU in parallel. First, on the dev machine:
#     bash scripts/prepare_gpu_data_moco.sh            # copies the tarball into .gpu/ (git-ignored)
# then on the GPU machine, from the repo root:
#     bash scripts/evidence_moco.sh                    # writes $OUT (or runs/evidence_moco/)
# CPU-scale (a few minutes): PRESET=cpu bash scripts/evidence_moco.sh
# Every knob is an environment variable (STEPS, BATCH, ARCH, NDA, NDA_K, SEEDS, TIME_LIMIT, EXTRA).
# Each run folder is started afresh (--overwrite): rerunning the script replaces its runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
# run folders (checkpoints: ~200 MB per ResNet-18 run) stay in $RUNS; $OUT gets the small files and the table
RUNS=${RUNS:-runs/evidence_moco}
OUT=${OUT:-$RUNS}
DATA=${DATA:-.gpu/cifar10-jpg.tar.gz}
[ -f "$DATA" ] || DATA=../shared/data/cifar10/cifar10-jpg.tar.gz
PRESET=${PRESET:-gpu}
# decoded-array cache: inside .gpu/ on the GPU machine; the default (~/.cache/nda) elsewhere, so a CPU run
# never puts 180 MB of arrays into the folder that travels to the GPU machine
[ "$PRESET" = gpu ] && export NDA_CACHE=${NDA_CACHE:-$(pwd)/.gpu/cache}
NDA=${NDA:-jigsaw:grid=2}
NDA_K=${NDA_K:-1}
SEEDS=${SEEDS:-"0 1"}
if [ "$PRESET" = gpu ]; then
  ARCH=${ARCH:-resnet18}; STEPS=${STEPS:-1000}; BATCH=${BATCH:-512}; QUEUE=${QUEUE:-4096}; SPLITS=${SPLITS:-8}
  LIMIT=${LIMIT:-none}; TEST_LIMIT=${TEST_LIMIT:-none}; MP=${MP:-bf16}; TIME_LIMIT=${TIME_LIMIT:-5.5}
  KNN_EVERY=${KNN_EVERY:-400}; LR=${LR:-0.06}; PROBE_EPOCHS=${PROBE_EPOCHS:-200}
else
  ARCH=${ARCH:-tiny}; STEPS=${STEPS:-250}; BATCH=${BATCH:-64}; QUEUE=${QUEUE:-1024}; SPLITS=${SPLITS:-4}
  LIMIT=${LIMIT:-5000}; TEST_LIMIT=${TEST_LIMIT:-2000}; MP=${MP:-no}; TIME_LIMIT=${TIME_LIMIT:-none}
  KNN_EVERY=${KNN_EVERY:-0}; LR=${LR:-0.06}; PROBE_EPOCHS=${PROBE_EPOCHS:-100}
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
mkdir -p "$OUT" "$RUNS"
START=$(date +%s)

status=0
if [ -z "${SUMMARIZE_ONLY:-}" ]; then  # SUMMARIZE_ONLY=1: only rebuild the table from $OUT/*/results.json
# Decode once (JPEG -> cached uint8 arrays), so the parallel runs only read the cache.
$PY -c "
from nda.data.images import load_images
for split in ('train', 'test'):
    d = load_images('$DATA', split)
    print(d.name, tuple(d.images.shape))
"

pids=()
for seed in $SEEDS; do
  for cfg in moco moco_nda; do
    nda_args=(--nda none)
    [ "$cfg" = moco_nda ] && nda_args=(--nda "$NDA" --nda-k "$NDA_K")
    $PY tasks/moco.py --data "$DATA" --arch "$ARCH" --steps "$STEPS" --batch-size "$BATCH" --queue-size "$QUEUE" \
      --bn shuffle --bn-splits "$SPLITS" --lr "$LR" --mixed-precision "$MP" --seed "$seed" \
      --train-limit "$LIMIT" --test-limit "$TEST_LIMIT" --max-minutes "$TIME_LIMIT" --overwrite \
      --knn-every "$KNN_EVERY" --probe-epochs "$PROBE_EPOCHS" --log-every 20 --progress false "${nda_args[@]}" ${EXTRA:-} \
      --out-dir "$RUNS/${cfg}_s${seed}" > "$OUT/${cfg}_s${seed}.log" 2>&1 &
    pids+=($!)
  done
done
# floor: the same backbone with random weights (kNN + probe on the same splits)
$PY tasks/eval_repr.py --encoder "random:$ARCH" --data "$DATA" --train-limit "$LIMIT" --test-limit "$TEST_LIMIT" \
  --probe-epochs "$PROBE_EPOCHS" --mixed-precision "$MP" --out-dir "$OUT/random_init" > "$OUT/random_init.log" 2>&1 &
pids+=($!)
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
[ $status = 0 ] || { echo "a run failed: see $OUT/*.log"; tail -n 30 "$OUT"/*.log; }
if [ "$(cd "$OUT" && pwd)" != "$(cd "$RUNS" && pwd)" ]; then
  for run in "$RUNS"/moco*_s*; do
    mkdir -p "$OUT/$(basename "$run")"
    cp -f "$run"/results.json "$run"/metrics.csv "$run"/config.json "$OUT/$(basename "$run")/" 2>/dev/null || true
  done
fi
WALL="$(( $(date +%s) - START )) s"
else
WALL="not measured (SUMMARIZE_ONLY)"
fi
$PY - "$OUT" "$WALL" "$PRESET" <<'PYEOF'
import json, statistics, sys
from pathlib import Path
out, wall, preset = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows, table = [], {}
for res in sorted(out.glob("*/results.json")):
    r = json.loads(res.read_text())
    if r.get("task") != "moco":
        continue  # the random-init floor is reported on its own row
    r = {**r.get("run", {}), **r}  # the run skeleton's facts (steps, stopped_early, device, ...) under "run"
    cfg = res.parent.name.rsplit("_s", 1)[0]
    rows.append({"run": res.parent.name, "config": cfg, **{k: r.get(k) for k in (
        "steps", "steps_planned", "stopped_early", "train_seconds_this_session", "global_batch", "nda", "nda_k",
        "knn_top1", "linear_probe_top1", "eval_set", "train_set", "extractor", "device", "mixed_precision")}})
    table.setdefault(cfg, []).append(r)
def ms(vals):
    vals = [v for v in vals if v is not None]
    if not vals: return "n/a"
    return f"{100*statistics.mean(vals):.2f} ± {100*statistics.stdev(vals):.2f}" if len(vals) > 1 else f"{100*vals[0]:.2f}"
lines = [f"# MoCo-v2 vs MoCo-v2 + NDA negatives ({preset} preset), CIFAR-10 (JPEG re-encoded)", "",
         f"Wall-clock for the whole experiment: {wall}. Top-1 in % on the test split (mean ± std over seeds).", "",
         "| config | seeds | steps | global batch | train s/run | kNN top-1 | linear-probe top-1 |",
         "|---|---|---|---|---|---|---|"]
for cfg, rs in sorted(table.items()):
    lines.append(f"| {cfg} ({rs[0]['nda']}, K={rs[0]['nda_k']}) | {len(rs)} | {'/'.join(str(r['steps']) for r in rs)} | "
                 f"{rs[0]['global_batch']} | {statistics.mean(r['train_seconds_this_session'] for r in rs):.0f} | "
                 f"{ms([r.get('knn_top1') for r in rs])} | {ms([r.get('linear_probe_top1') for r in rs])} |")
floor = out / "random_init" / "results.json"
if floor.is_file():
    f = json.loads(floor.read_text())
    lines.append(f"| random init (no training: the floor) | - | 0 | - | - | {100*f['knn_top1']:.2f} | {100*f['linear_probe_top1']:.2f} |")
lines += ["", "| run | kNN top-1 | linear-probe top-1 | steps | stopped early |", "|---|---|---|---|---|"]
for row in rows:
    pct = lambda v: "n/a (stopped early)" if v is None else f"{100*v:.2f}"
    lines.append(f"| {row['run']} | {pct(row['knn_top1'])} | {pct(row['linear_probe_top1'])} | "
                 f"{row['steps']} | {row['stopped_early']} |")
if rows:
    lines += ["", f"Train set: {rows[0]['train_set']}; eval set: {rows[0]['eval_set']}; features: {rows[0]['extractor']}; "
              f"device: {rows[0]['device']}, precision: {rows[0]['mixed_precision']}."]
(out / "results.md").write_text("\n".join(lines) + "\n")
(out / "results.json").write_text(json.dumps({"wall_seconds": wall, "preset": preset, "runs": rows}, indent=2))
print("\n".join(lines))
PYEOF
exit $status
