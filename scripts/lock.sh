#!/usr/bin/env bash
# Rewrite constraints.txt from .venv after a dependency change (run the tests on that .venv first).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# The lock: every package of .venv at the versions the tests ran with (scripts/install.sh installs with -c this file)."
  echo "# torch is left out: install.sh pins the CPU build, GPU images bring their CUDA build. Regenerate: scripts/lock.sh"
  .venv/bin/pip freeze --exclude-editable 2>/dev/null | grep -viE '^(domain-embed|en[-_]core[-_]web[-_]sm|torch|triton|nvidia-)' | sort -f
} > constraints.txt.tmp
mv constraints.txt.tmp constraints.txt
