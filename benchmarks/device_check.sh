#!/usr/bin/env bash
# The whole GPU speed and memory check in one go, for a short device lease (at most ~8 minutes):
# Stable Diffusion 1.5-, SDXL-, SD3.5-medium-, FLUX.1-dev- and DeepFloyd IF-I-XL-sized random components built on the device (no hub
# there), paper and fast presets, a few steps per stage extrapolated, each stage in its own process. Each model has its
# own time limit, so a slow one cannot take the others' time; the tables go to stdout and JSON files to $OUT (or ./).
#     bash benchmarks/device_check.sh
set -u
out="${OUT:-.}"
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
for m in sd15 sdxl sd3 flux if; do
  limit=$([ "$m" = sd15 ] && echo 120 || echo 90)  # 120 + 4 x 90 = 8 minutes in all
  echo; echo "## --$m (limit ${limit} s)"
  quick=$([ "$m" = sd15 ] && echo --quick || echo)
  timeout "$limit" python benchmarks/speed.py --"$m" $quick --device cuda --json "$out/speed-$m.json" || echo "# --$m stopped or failed (exit $?)"
done
