#!/usr/bin/env bash
# GPU checks, as one short script (under 5 minutes on one GPU): FAISS's GPU copy of a 1 M-vector
# Flat index gives the same top 10 as the CPU from many threads at once, k past 2048 falls back to
# the CPU, batched QPS on both; an IVF index tuned by the indexer answers alike on GPU and CPU;
# ViT-B-32 indexing img/s in fp16 (model-only and `spyglass index`) with fidelity against CPU fp32, and each
# encoder runtime (PyTorch, ONNX Runtime) on CUDA;
# then `spyglass finetune --from-scratch` trains on the GPU (benchmarks/finetune_recall.py, one seed);
# and, with the ray extra, the Ray runner with a GPU encoder actor against the local runner.
# Run it where Spyglass is installed with the gpu extra: pip install -e '.[gpu]'.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PYTHON" -c "import faiss, torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
"$PYTHON" benchmarks/gpu_check.py "$@"
# Indexing on the GPU: fp16 behind the fidelity check, batches of 256 from pinned memory.
"$PYTHON" benchmarks/gpu_index_check.py --images 2000
# Training on the GPU (bf16 autocast): one seed of the from-scratch recall benchmark.
"$PYTHON" benchmarks/finetune_recall.py --seeds 0
# The Ray runner on the GPU: a local Ray with one GPU, one encoder actor on it, against the local
# runner on the same folder (needs pip install -e '.[ray]').
if "$PYTHON" -c "import ray.data" 2>/dev/null; then
  "$PYTHON" benchmarks/ray_overhead.py --images 2000 --rounds 2 --device cuda --gpus 1 --partition-files 256
fi
