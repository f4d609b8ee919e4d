#!/usr/bin/env bash
# Creates .venv with what the real-client tests need (ADBC Flight SQL driver,
# pyarrow, pytest, requests, cryptography) and prints its python path.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv >&2
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r clients/python/requirements.txt >&2
echo "$PWD/.venv/bin/python"
