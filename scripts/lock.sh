#!/usr/bin/env bash
# Re-pins every dependency with hashes (needs the package registry).
#   requirements/dev.lock    everything the setup installs, less llama-cpp-python
#   requirements/llama.lock  llama-cpp-python's source archive, hash-pinned; setup.sh builds it
#                            once into a wheel in .tools/wheels (it ships no binary wheels)
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
tmp=$(mktemp)
# Start from the current pins: uv keeps them unless a changed requirement needs another.
cat requirements/dev.lock requirements/llama.lock > "$tmp"
"$UV" pip compile pyproject.toml --all-extras --generate-hashes --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 -q -o "$tmp"
python3 - "$tmp" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r"\n(?=[a-z0-9])", text)
keep, llama = [], []
for b in blocks:
    (llama if b.startswith("llama-cpp-python==") else keep).append(b)
header = "# Pinned with hashes by scripts/lock.sh; llama-cpp-python is in llama.lock.\n"
open("requirements/dev.lock", "w").write(header + "\n".join(keep).split("\n", 2)[2] + "\n")
open("requirements/llama.lock", "w").write(
    "# llama-cpp-python's source archive; scripts/setup.sh builds the wheel from it once.\n"
    + "\n".join(llama).strip() + "\n")
PY
# The Pipecat peer of the latency bench lives in its own virtualenv (its pins clash with ours).
# (Written through a file: with -q, uv prints nothing to -o -.)
tail -n +2 requirements/pipecat.lock > "$tmp"
"$UV" pip compile requirements/pipecat.in --generate-hashes --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 -q --no-header -o "$tmp"
{
  echo "# Pinned with hashes by scripts/lock.sh from requirements/pipecat.in (the Pipecat peer's .venv-pipecat)."
  cat "$tmp"
} > requirements/pipecat.lock
rm -f "$tmp"
echo "locked: $(grep -c '^[a-z0-9]' requirements/dev.lock) packages + llama-cpp-python"
