#!/usr/bin/env bash
# Re-pins every dependency with hashes (needs the package registry).
#   requirements/dev.lock    everything the setup installs, less llama-cpp-python and the
#                            piper extra
#   requirements/piper.lock  what the piper extra adds on top of dev.lock (piper-tts is GPL-3.0:
#                            only `scripts/setup.sh --piper` or `--test` installs it)
#   requirements/llama.lock  llama-cpp-python's source archive, hash-pinned; setup.sh builds it
#                            once into a wheel in .tools/wheels (it ships no binary wheels)
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
tmp=$(mktemp)
base=$(mktemp)
# Start from the current pins: uv keeps them unless a changed requirement needs another.
cat requirements/{dev,piper,llama}.lock 2>/dev/null > "$tmp" || true
"$UV" pip compile pyproject.toml --all-extras --generate-hashes --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 -q -o "$tmp"
# The default install: every extra but piper, pinned as the whole resolution above pins them.
cp "$tmp" "$base"
extras=$(python3 -c 'import tomllib; print(" ".join(f"--extra {e}" for e in
  tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"] if e != "piper"))')
# shellcheck disable=SC2086  # one word per flag
"$UV" pip compile pyproject.toml $extras --generate-hashes --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 -q -o "$base"
python3 - "$tmp" "$base" <<'PY'
import re, sys

def blocks(path):
    text = open(path).read()
    found = re.split(r"\n(?=[a-z0-9])", text)
    return {b.split(" ", 1)[0]: b.strip() for b in found[1:]}  # found[0]: uv's header

everything, default = blocks(sys.argv[1]), blocks(sys.argv[2])
for pin in default:
    if pin not in everything:
        sys.exit(f"lock: {pin} of the default install is not in the whole resolution")
names = list(everything)  # name==version, in uv's order
llama = [everything[p] for p in names if p.startswith("llama-cpp-python==")]
dev = [default[p] for p in names if p in default and not p.startswith("llama-cpp-python==")]
piper = [everything[p] for p in names if p not in default]
open("requirements/dev.lock", "w").write(
    "# Pinned with hashes by scripts/lock.sh; llama-cpp-python is in llama.lock, the piper\n"
    "# extra (GPL-3.0) in piper.lock.\n" + "\n".join(dev) + "\n")
open("requirements/piper.lock", "w").write(
    "# Pinned with hashes by scripts/lock.sh: what the piper extra (piper-tts is GPL-3.0) adds\n"
    "# to dev.lock; only `scripts/setup.sh --piper` (or --test) installs it.\n"
    + "\n".join(piper) + "\n")
open("requirements/llama.lock", "w").write(
    "# llama-cpp-python's source archive; scripts/setup.sh builds the wheel from it once.\n"
    + "\n".join(llama) + "\n")
PY
rm -f "$base"
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
echo "locked: $(grep -c '^[a-z0-9]' requirements/dev.lock) packages + llama-cpp-python;" \
  "piper adds $(grep -c '^[a-z0-9]' requirements/piper.lock)"
