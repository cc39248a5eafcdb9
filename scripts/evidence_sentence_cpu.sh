#!/usr/bin/env bash
# CPU evidence for the soft-negative objectives (issue 10): scripts/evidence_sentence.sh with DEVICE=cpu.
# all-MiniLM-L6-v2 trained by tasks/sentence.py (unsupervised SimCSE on the STS-B train sentences) with no NDA,
# token_shuffle and counterfactual as full-weight columns, small-weight columns and margin; >= 2 seeds; every model
# (and the untouched one) through tasks/eval_sentence.py. Knobs (env): STEPS BATCH SEEDS THREADS PARALLEL LR
# SMALL_W LAMBDA CONFIGS EVAL_TASKS OUT ... -- see scripts/evidence_sentence.sh.
#   STEPS=2 SEEDS=0 CONFIGS=none EVAL_TASKS=STS-B OUT=/tmp/ev scripts/evidence_sentence_cpu.sh   # smoke test
DEVICE=cpu exec "$(dirname "$0")/evidence_sentence.sh" "$@"
