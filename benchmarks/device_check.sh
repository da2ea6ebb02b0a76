#!/usr/bin/env bash
# The prepared device check (issue: the network at the hardware's speed): the CUDA tests and
# the GPU benchmarks in one run, one generated table. On the lent GPU machine, following
# ../shared/docs/DEVICE.md: `make device-prep` puts what that machine lacks in .gpu/ (the
# pure-Python packages and the AV-digits sources, 31 MB), then
#
#   run(command="PYTHONPATH=$PWD/.gpu/site:$PWD bash benchmarks/device_check.sh",
#       carry=[".gpu"], timeout_s=420)
#
# Locally, to try the script itself on the CPU: DEVICE=cpu LIMIT=5 bash benchmarks/device_check.sh
# Writes $OUT/device_check.md (or docs/bench/device_check.md without $OUT) and $OUT/log.
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
LIMIT=${LIMIT:-0}                       # samples per class for the training epoch (0: all)
DATA=${DATA:-.gpu/data}
[ -d "$DATA" ] || DATA=../shared/data
DEST=${OUT:-docs/bench}
mkdir -p "$DEST"
LOG=$DEST/log
TABLE=$DEST/device_check.md
PY=${PYTHON:-python}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
: > "$LOG"

step() {  # step NAME COMMAND...: run, keep the output, time it, note the exit status
    local name=$1; shift
    local t0=$(date +%s%N)
    echo "== $name: $*" | tee -a "$LOG"
    "$@" 2>&1 | tee -a "$LOG" | tail -n 40 > "$DEST/$name.txt"
    local rc=${PIPESTATUS[0]}
    local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    printf '| %s | %s | %d.%03d |\n' "$name" "$([ "$rc" = 0 ] && echo ok || echo "FAILED ($rc)")" \
        $((ms / 1000)) $((ms % 1000)) >> "$DEST/steps.md"
}

: > "$DEST/steps.md"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" 2>&1 | tee -a "$LOG"
step tests env TAAF_DATA_ROOT="$DATA" $PY -m pytest -q -p no:cacheprovider test/test_model.py \
    test/test_checkpoint.py \
    test/test_lif_fused.py test/test_batches.py test/test_classifier.py test/test_backends.py
step tests_training env TAAF_DATA_ROOT="$DATA" $PY -m pytest -q -p no:cacheprovider \
    test/test_training.py -k "cuda or reads_nothing or bfloat16"
for dtype in float32 float16; do
    [ "$DEVICE" = cpu ] && [ "$dtype" = float16 ] && continue
    step "lif_$dtype" $PY benchmarks/bench_lif.py --device "$DEVICE" --dtype "$dtype" \
        --batch 64 --neurons $([ "$DEVICE" = cpu ] && echo 4096 || echo 65536)
done
DTYPES="float32 float16 bfloat16"
[ "$DEVICE" = cpu ] && DTYPES=float32   # float16 autocast is CUDA only
# Real test windows (a trained model barely spikes on random counts): AV-digits is built once
# from the sources into the default cache (~/.cache/taaf_ros), which the training steps reuse.
for dtype in $DTYPES; do
    step "network_$dtype" $PY benchmarks/bench_network.py --device "$DEVICE" --dtype "$dtype" \
        --iters 30 --energy-samples 20 --data-root "$DATA"
done
RUN=$(mktemp -d)
# Two epochs each (the second one warm: compiled, cached), float32 first; the variants share
# its front-end cache.
TRAIN=(train_ead.py --data-root "$DATA" --device "$DEVICE" --epochs 2
       --limit-per-class "$LIMIT" --no-progress)
step train_epoch $PY "${TRAIN[@]}" --out-dir "$RUN/float32"
for variant in bfloat16 compile; do
    mkdir -p "$RUN/$variant" && ln -s "$RUN/float32/cache" "$RUN/$variant/cache"
    flag=(--precision bfloat16); [ "$variant" = compile ] && flag=(--compile)
    step "train_epoch_$variant" $PY "${TRAIN[@]}" "${flag[@]}" --out-dir "$RUN/$variant"
done
step train_epochs $PY - "$RUN/float32" "$RUN/bfloat16" "$RUN/compile" <<'PY'
import json, sys
from pathlib import Path
print("| training | epoch 1 (s) | epoch 2 (s) | val acc after 2 |")
print("|---|---:|---:|---:|")
for run in map(Path, sys.argv[1:]):
    if (run / "metrics.json").is_file():
        h = json.loads((run / "metrics.json").read_text())["history"]
        print(f"| {run.name} | {h[0]['epoch_time_s']:.2f} | {h[-1]['epoch_time_s']:.2f} | "
              f"{h[-1]['val_acc']:.3f} |")
PY
if [ "$DEVICE" != cpu ]; then
    step torchrun_nccl torchrun --standalone --nproc_per_node 1 train_ead.py --data-root "$DATA" \
        --device "$DEVICE" --epochs 1 --limit-per-class "$LIMIT" \
        --out-dir "$RUN/ddp" --no-progress --no-feature-cache
fi
{
    echo "# Device check"
    echo
    echo "Written by \`benchmarks/device_check.sh\` (DEVICE=$DEVICE) on $(date +%F)."
    echo
    echo "| step | result | seconds |"
    echo "|---|---|---:|"
    cat "$DEST/steps.md"
    for f in "$DEST"/lif_*.txt "$DEST"/network_*.txt "$DEST"/train_epochs.txt "$DEST"/tests.txt \
            "$DEST"/tests_training.txt; do
        [ -f "$f" ] || continue
        echo
        echo "## $(basename "$f" .txt)"
        echo
        echo '```'
        cat "$f"
        echo '```'
    done
} > "$TABLE"
rm -rf "$RUN"
echo "wrote $TABLE"
