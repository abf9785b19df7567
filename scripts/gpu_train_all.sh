#!/usr/bin/env bash
# Train the three gpu-mobilefacenet configs back to back on one GPU, then time a slice of
# the full-scale IR-50 configuration on synthetic faces.
#
#   scripts/gpu_train_all.sh PACK [OUT_ROOT] [BUDGET_SECONDS]
#
# PACK: the training pack (faceobf data pack). OUT_ROOT: default runs/gpu; each scheme
# trains into OUT_ROOT/<scheme>/ (model in OUT_ROOT/<scheme>/model). BUDGET_SECONDS: wall
# time for the three trainings together (default 480): the epochs, the same for all three,
# are the configs' own (60) or fewer where the slowest scheme's measured throughput would
# not fit them in the budget, with room for start-up (about 20 s of cuDNN autotuning) and
# validation; each run's --max-seconds (twice its share) is only a safety net.
# Needs python3 with torch (CUDA), numpy, safetensors, pillow, tqdm and matplotlib; the
# package is used from src/ when it is not installed. Run from the repository root.
set -euo pipefail

PACK=${1:?usage: scripts/gpu_train_all.sh PACK [OUT_ROOT] [BUDGET_SECONDS]}
ROOT=${2:-runs/gpu}
BUDGET=${3:-480}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
SCHEMES=(faceobfuscator arcface-fd arcface)
faceobf() { "$PY" -c 'import sys; from faceobfuscator.cli import main; sys.exit(main())' "$@"; }

mkdir -p "$ROOT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$ROOT/gpu.txt" || true

# 60% of the budget for training steps: loading, autotuning and validation take the rest
configs=()
for s in "${SCHEMES[@]}"; do configs+=("configs/gpu-mobilefacenet-$s.json"); done
"$PY" - "$PACK" "$BUDGET" "${configs[@]}" >"$ROOT/plan.json" <<'PYEOF'
import json, sys
from faceobfuscator.research.bench.training import plan_epochs
pack, budget, paths = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
print(json.dumps(plan_epochs(paths, pack, 0.6 * budget / len(paths))))
PYEOF
EPOCHS=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["epochs"])' "$ROOT/plan.json")
echo "plan: $(cat "$ROOT/plan.json")"

per_run=$(( 2 * BUDGET / ${#SCHEMES[@]} ))
for s in "${SCHEMES[@]}"; do
  start=$(date +%s)
  faceobf train "configs/gpu-mobilefacenet-$s.json" --pack "$PACK" --epochs "$EPOCHS" \
    --max-seconds "$per_run" --out "$ROOT/$s" --device "$DEVICE" --no-progress
  echo "$s: $(( $(date +%s) - start )) s"
done

# the paper's full-scale configuration for ~30 s on random faces (MS1M's 85,742 classes)
faceobf train configs/ms1m-iresnet50.json --synthetic 85742 --max-seconds 30 \
  --out "$ROOT/ir50-slice" --device "$DEVICE" --no-progress
"$PY" - "$ROOT" <<'PYEOF'
import json, sys
from pathlib import Path
root = Path(sys.argv[1])
steps = [json.loads(l) for l in (root / "ir50-slice/metrics.jsonl").read_text().splitlines()]
steps = [r for r in steps if r["kind"] == "step"]
rates = [r["images_per_s"] for r in steps[1:]] or [r["images_per_s"] for r in steps]
out = {
    "config": "configs/ms1m-iresnet50.json",
    "data": "synthetic, 85742 classes",
    "gpu": (root / "gpu.txt").read_text().strip() if (root / "gpu.txt").exists() else None,
    "steps": steps[-1]["step"] if steps else 0,
    "train_images_per_s": sum(rates) / len(rates) if rates else None,
    "note": "mean over logged windows after the first (cuDNN autotuning)",
}
(root / "ir50_slice.json").write_text(json.dumps(out, indent=2) + "\n")
print(json.dumps(out))
PYEOF
