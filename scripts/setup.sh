#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment with the CPU build of PyTorch (or the
# CUDA one with TUNEDECK_TORCH=cuda), the project with its dev extra, and Chromium for the browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  if [ "${TUNEDECK_TORCH:-cpu}" = "cpu" ]; then
    # Pinned: this release lies on the build machines' disk; elsewhere it comes from the CPU index.
    python -m pip install -q torch==2.13.0
  else
    python -m pip install -q torch
  fi
fi
python -m pip install -q -e ".[dev]"
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: the browser test will be skipped"
fi
# Chinese glyphs for the Chinese page's browser test and its README screenshot.
if ! fc-list :lang=zh 2>/dev/null | grep -q . && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  apt-get install -y -qq fonts-noto-cjk >/dev/null || echo "fonts-noto-cjk not installed: Chinese screenshots show boxes"
fi
