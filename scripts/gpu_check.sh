#!/usr/bin/env bash
# GPU checks, run on a CUDA machine from a checkout (no install needed beyond torch + diffusers):
#  1. pinned shared-memory arena tests (tests/workers/test_cuda.py, marker gpu)
#  2. benchmarks/workers.py --cuda (pinned vs pageable host->device) and figure (b)
#  3. benchmarks/diffusion.py --gpu (SD1.5-shaped fp16, 20 steps at 512x512, engine vs raw loop)
#  4. the txt2img example through the CLI on the GPU worker (smoke test)
#  5. benchmarks/parallel.py --gpu: a 4-seed grid on one GPU with 1 vs 2 workers (model copies),
#     and a 1 GiB CUDA tensor between two workers by CUDA IPC vs through the host
# Each step runs even when an earlier one fails; the exit status says whether all passed.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${OUT:-/tmp/vortex-gpu}"; mkdir -p "$out"
status=0
step() { echo; echo "== $*"; "$@" || { echo "!! failed: $*"; status=1; }; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
step python3 -c "import torch, diffusers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'diffusers', diffusers.__version__)"
step python3 -m pytest -q -p no:cacheprovider -m gpu tests/workers/test_cuda.py
step python3 -m pytest -q -p no:cacheprovider tests/server/test_telemetry.py -k gpu  # NVML: GPU memory in /metrics
step python3 benchmarks/workers.py --cuda
step python3 benchmarks/workers.py --only b
step python3 benchmarks/diffusion.py --gpu
step python3 -m vortex_jupyter.cli run examples/txt2img.json -o "$out"
step python3 benchmarks/parallel.py --gpu
exit $status
