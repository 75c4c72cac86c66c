#!/usr/bin/env bash
# `make gpu-bundle`: .whl/, the wheels the GPU check needs on the lent machine's image (Python 3.12, torch 2.11 with
# CUDA, sacrebleu and sentencepiece; no network), under the 64 MiB a device call carries: fairseq-fixed's Python 3.12
# wheel (PyPI's manylinux one where there is one, else built here against that torch; debug symbols stripped; its
# torch-linked libnat/libbase, which nothing here imports, may not match the image's torch), and every other package
# the plugin, the scripts and the tests import.
#   bash scripts/gpu_bundle.sh PYTHON3.12 [TORCH_VERSION]      (the build venv .whl-build/ is kept for reruns)
# On the device: bash scripts/gpu_device.sh (installs them with pip --no-index and runs the check).
set -euo pipefail
cd "$(dirname "$0")/.."
PY312=${1:?usage: scripts/gpu_bundle.sh PYTHON3.12 [TORCH_VERSION]}
TORCH=${2:-2.11.0}
OUT=.whl
BUILD=.whl-build
LIMIT_MIB=48  # the bundle and data-bin/multi30k.de-en (15 MiB) travel together in one call's 64 MiB
# what the plugin, the scripts and the tests import beyond the image's torch, sacrebleu (with numpy, regex,
# portalocker, lxml, tabulate, colorama) and sentencepiece; their dependencies come along (pinned where the main
# venv pins them); fairseq-fixed's torchaudio and scikit-learn are not imported by anything here and stay out
WANTED=(hydra-core==1.3.2 omegaconf==2.3.0 bitarray==3.12.3 cffi==2.1.1 tqdm==4.70.1 packaging==26.4 sacremoses==0.2.0
        matplotlib==3.11.2 pytest==9.2.0)
PINS=(antlr4-python3-runtime==4.9.3 PyYAML==6.0.4 pycparser==3.12 click==8.5.1 joblib==1.6.0 cloudpickle==3.1.3
      regex==2026.11.19 contourpy==1.3.3 cycler==0.12.1 fonttools==4.68.0 kiwisolver==1.5.1 pillow==13.0.0
      pyparsing==3.3.3 python-dateutil==4.0.0 iniconfig==2.3.1 pluggy==1.7.0 Pygments==2.21.0 numpy==2.4.6)
IN_IMAGE=(numpy)

version=$("$PY312" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$version" = 3.12 ] || { echo "error: $PY312 is Python $version, not 3.12 (the device image's)" >&2; exit 1; }
[ -x "$BUILD/bin/python" ] || "$PY312" -m venv "$BUILD"
"$BUILD/bin/pip" install -q "torch==$TORCH" numpy==2.4.6 cython==3.3.1 setuptools wheel
rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp"
"$BUILD/bin/pip" wheel -q --no-build-isolation --no-deps -w "$OUT.tmp" fairseq-fixed==0.12.3.1
printf '%s\n' "${PINS[@]}" > "$OUT.tmp/constraints.txt"
"$BUILD/bin/pip" wheel -q -w "$OUT.tmp" -c "$OUT.tmp/constraints.txt" "${WANTED[@]}"  # builds antlr's sdist
rm "$OUT.tmp/constraints.txt" && for name in "${IN_IMAGE[@]}"; do rm -f "$OUT.tmp/$name"-*.whl; done
# fairseq's C++ extensions carry ~10 MiB of debug symbols each, and its examples/ (nothing here imports them) 7 MiB
(cd "$OUT.tmp" && fs=$(ls fairseq_fixed-*.whl) && "../$BUILD/bin/python" -m wheel unpack -d unpacked "$fs" >/dev/null &&
 find unpacked -name '*.so' -exec strip --strip-debug {} + && rm -r unpacked/*/fairseq/examples && rm "$fs" &&
 "../$BUILD/bin/python" -m wheel pack -d . unpacked/* >/dev/null && rm -rf unpacked)
printf '%s\n' "torch $TORCH" "python $version" > "$OUT.tmp/BUILT_FOR"
size=$(du -sm "$OUT.tmp" | cut -f1)
[ "$size" -le "$LIMIT_MIB" ] || { echo "error: the bundle is $size MiB, over $LIMIT_MIB" >&2; exit 1; }
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "gpu bundle: $(ls "$OUT"/*.whl | wc -l) wheels, $size MiB in $OUT/ (torch $TORCH, Python $version)"
