#!/usr/bin/env bash
# Installs whatever is missing for Thinnest on this machine, and nothing twice:
#   Debian packages, the pinned livekit-server (built with Go into .tools/bin), llama.cpp's
#   llama-server (built from the pinned llama-cpp-python archive into .tools/bin),
#   a project-local virtualenv (.venv) synced to the hashed lock files.
# Usage: scripts/setup.sh [--piper] [--test] [--peers]
#   (none)   the default install: no GPL component (the default TTS is hibari, Apache-2.0)
#   --piper  adds the GPL-3.0 voices: the piper extra (requirements/piper.lock) and the Debian
#            package espeak-ng (the espeak TTS); later runs keep them (remove .venv to drop piper)
#   --test   adds what the test suite needs: --piper, --peers, PostgreSQL, chromium
#   --peers  adds only the Pipecat peer's virtualenv (the latency bench)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

TEST=0 PEERS=0 PIPER=0
for arg in "$@"; do
  case "$arg" in
    --test) TEST=1 PEERS=1 PIPER=1 ;;
    --peers) PEERS=1 ;;
    --piper) PIPER=1 ;;
    *) printf '[setup] error: unknown option %s; usage: scripts/setup.sh [--piper] [--test] [--peers]\n' "$arg" >&2
       exit 2 ;;
  esac
done

LIVEKIT_VERSION=v1.13.5          # keep in sync with thinnest.livekit.devserver.LIVEKIT_VERSION
GO_MIN_MINOR=26                  # livekit-server v1.13.5 needs Go >= 1.26
TOOLS=$ROOT/.tools/bin
# Built artefacts that outlive a clone: reruns on the same machine (CI included) reuse them.
CACHE=${THINNEST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/thinnest}
VENV=$ROOT/.venv
LOCKS=(requirements/dev.lock)
# A venv that an earlier --piper (or --test) gave piper keeps it: nothing is installed twice.
[[ -f "$VENV/.with-piper" ]] && PIPER=1
((PIPER)) && LOCKS+=(requirements/piper.lock)

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# --- Debian packages ------------------------------------------------------------------------
LLAMA_WHEELS=$CACHE/wheels
LLAMA_VERSION=$(sed -nE 's/^llama-cpp-python==([0-9.]+).*/\1/p' requirements/llama.lock)
have_llama_wheel() { compgen -G "$LLAMA_WHEELS/llama_cpp_python-$LLAMA_VERSION-*.whl" >/dev/null; }
# llama.cpp's llama-server (the shared LLM of `thinnest models`), built from the same archive.
LLAMA_SERVER=$CACHE/bin/llama-server-$LLAMA_VERSION
have_llama_server() { [[ -x "$LLAMA_SERVER" ]] && "$LLAMA_SERVER" --version >/dev/null 2>&1; }

APT_PACKAGES=(ca-certificates)
((PIPER)) && APT_PACKAGES+=(espeak-ng)   # GPL-3.0, a separate program: the espeak TTS
{ have_llama_wheel && have_llama_server; } || APT_PACKAGES+=(cmake build-essential)
if ((TEST)); then
  APT_PACKAGES+=(postgresql chromium)   # chromium: the browser tests (tests/web)
  APT_PACKAGES+=(redis-server iproute2 haproxy)  # `thinnest cluster` (tests/cluster): Redis, namespaces, load balancer
fi
command -v npm >/dev/null || APT_PACKAGES+=(nodejs npm)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    die "missing Debian packages: ${missing[*]}. Run: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- livekit-server, pinned -----------------------------------------------------------------
want="livekit-server version ${LIVEKIT_VERSION#v}"
have_lk() { [[ -x "$1" ]] && [[ "$("$1" --version 2>/dev/null)" == "$want" ]]; }
mkdir -p "$TOOLS"
if have_lk "$TOOLS/livekit-server"; then
  :
elif command -v livekit-server >/dev/null && have_lk "$(command -v livekit-server)"; then
  ln -sf "$(command -v livekit-server)" "$TOOLS/livekit-server"
elif have_lk "$CACHE/bin/livekit-server-$LIVEKIT_VERSION"; then
  cp "$CACHE/bin/livekit-server-$LIVEKIT_VERSION" "$TOOLS/livekit-server"
else
  GO=$(command -v go || true)
  [[ -z "$GO" && -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go
  [[ -n "$GO" ]] || die "Go is needed to build livekit-server $LIVEKIT_VERSION. Install Go 1.$GO_MIN_MINOR or newer (your OS packages or the Go project's release archive), or put a livekit-server $LIVEKIT_VERSION binary on PATH."
  minor=$("$GO" env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
  ((minor >= GO_MIN_MINOR)) || die "Go $("$GO" env GOVERSION) is too old; livekit-server $LIVEKIT_VERSION needs Go 1.$GO_MIN_MINOR or newer."
  say "building livekit-server $LIVEKIT_VERSION with $("$GO" env GOVERSION) (first time: a few minutes; cached after)"
  GOBIN="$TOOLS" "$GO" install "github.com/livekit/livekit-server/cmd/server@$LIVEKIT_VERSION"
  mv -f "$TOOLS/server" "$TOOLS/livekit-server"
  have_lk "$TOOLS/livekit-server" || die "built livekit-server does not report version $LIVEKIT_VERSION"
  mkdir -p "$CACHE/bin" && cp "$TOOLS/livekit-server" "$CACHE/bin/livekit-server-$LIVEKIT_VERSION"
fi

# --- Python virtualenv ----------------------------------------------------------------------
PY=""
for cand in python3.11 python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    PY=$(command -v "$cand"); break
  fi
done
[[ -n "$PY" ]] || die "Python 3.11 is needed (python3.11 not found). Install it, e.g. apt-get install python3.11 python3.11-venv."
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.synced-$(cat requirements/{bootstrap,llama}.lock "${LOCKS[@]}" pyproject.toml | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  say "installing Python dependencies from ${LOCKS[*]} (hash-checked, wheels only)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes -r requirements/bootstrap.lock
  "$VENV/bin/uv" pip sync -q --python "$VENV/bin/python" --require-hashes --only-binary :all: "${LOCKS[@]}"
fi

# llama-cpp-python ships only source: the hash-checked archive is downloaded once (into a
# temporary directory removed on exit) for the wheel and llama-server, whichever is missing.
LLAMA_SDIST=""
fetch_llama_sdist() {
  [[ -z "$LLAMA_SDIST" ]] || return 0
  LLAMA_SDIST=$(mktemp -d)
  trap 'rm -rf "$LLAMA_SDIST"' EXIT
  "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
    --require-hashes -r requirements/llama.lock -d "$LLAMA_SDIST/dist"
}
# Portable x86-64 build (AVX2/FMA/F16C), not tuned to this CPU: the binaries may move machines.
GGML_PORTABLE=(-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON)

# The wheel: built once (about 11 min on 2 cores), kept in the cache, installed from it after.
if ! have_llama_wheel; then
  say "building llama-cpp-python $LLAMA_VERSION once (about 11 minutes on 2 cores; reused after)"
  fetch_llama_sdist
  CMAKE_ARGS="${GGML_PORTABLE[*]}" \
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$VENV/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps -w "$LLAMA_WHEELS" \
      "$LLAMA_SDIST"/dist/llama_cpp_python-*.tar.gz
fi

# llama-server: the archive's vendor/llama.cpp, built once (about 9 min on 2 cores; cached),
# static, CPU only. Offline and hash-checked only: no web UI download (LLAMA_USE_PREBUILT_UI
# defaults to on and fetches one at build time), no npm, no curl or OpenSSL (we pass -m <path>).
if ! have_llama_server; then
  say "building llama-server from llama-cpp-python $LLAMA_VERSION once (about 9 minutes on 2 cores; reused after)"
  fetch_llama_sdist
  mkdir -p "$LLAMA_SDIST/src" "$CACHE/bin"
  tar xzf "$LLAMA_SDIST"/dist/llama_cpp_python-*.tar.gz -C "$LLAMA_SDIST/src" --strip-components=1
  generator=()
  if command -v ninja >/dev/null; then generator=(-G Ninja); fi
  build_log=$CACHE/llama-server-build.log
  if ! {
    cmake -S "$LLAMA_SDIST/src/vendor/llama.cpp" -B "$LLAMA_SDIST/build" ${generator[@]+"${generator[@]}"} \
      -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF "${GGML_PORTABLE[@]}" \
      -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
      -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF &&
      cmake --build "$LLAMA_SDIST/build" --target llama-server -j"$(nproc)"
  } >"$build_log" 2>&1; then
    tail -n 30 "$build_log" >&2
    die "building llama-server failed; the whole log is in $build_log"
  fi
  "$LLAMA_SDIST/build/bin/llama-server" --version >/dev/null 2>&1 ||
    die "the llama-server just built does not run; see $build_log"
  cp "$LLAMA_SDIST/build/bin/llama-server" "$LLAMA_SERVER.tmp"
  mv -f "$LLAMA_SERVER.tmp" "$LLAMA_SERVER"
fi
if ! cmp -s "$LLAMA_SERVER" "$TOOLS/llama-server"; then
  cp -f "$LLAMA_SERVER" "$TOOLS/llama-server"
  chmod 755 "$TOOLS/llama-server"
fi
if [[ ! -f "$stamp" ]]; then
  "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps --no-index \
    --find-links "$LLAMA_WHEELS" "llama-cpp-python==$LLAMA_VERSION"
  "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps -e .
  rm -f "$VENV"/.synced-* "$VENV/.with-piper"
  touch "$stamp"
  if ((PIPER)); then touch "$VENV/.with-piper"; fi
fi

# --- The Pipecat peer of the latency bench (--test or --peers): its own virtualenv -----------
# pipecat-ai pins protobuf and livekit versions that clash with ours, so it cannot share .venv.
if ((PEERS)); then
  PEER_VENV=$ROOT/.venv-pipecat
  peer_stamp="$PEER_VENV/.synced-$(sha256sum requirements/pipecat.lock | cut -c1-16)"
  if [[ ! -f "$peer_stamp" ]]; then
    say "installing the Pipecat peer into $PEER_VENV (hash-checked)"
    [[ -x "$PEER_VENV/bin/python" ]] || "$PY" -m venv "$PEER_VENV"
    "$VENV/bin/uv" pip sync -q --python "$PEER_VENV/bin/python" --require-hashes requirements/pipecat.lock
    rm -f "$PEER_VENV"/.synced-*
    touch "$peer_stamp"
  fi
fi
# --- Browser assets: livekit-client bundled with esbuild, both pinned in package-lock.json ------
# Rebuilt when the bundle is missing or its inputs changed (the stamp holds their hash).
WEB_SRC=$ROOT/clients/web
WEB_OUT=$ROOT/src/thinnest/web/livekit-client.js
web_hash=$(cat "$WEB_SRC"/package-lock.json "$WEB_SRC"/build.mjs "$WEB_SRC"/src/* | sha256sum | cut -c1-16)
if [[ ! -f "$WEB_OUT" || "$(cat "$WEB_OUT.stamp" 2>/dev/null)" != "$web_hash" ]]; then
  say "building the browser bundle (npm ci + esbuild)"
  (cd "$WEB_SRC" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error && npm run --silent build)
  echo "$web_hash" >"$WEB_OUT.stamp"
fi
# The React example's packages, for its browser test (tests/web/test_react.py builds it).
REACT=$ROOT/examples/react
if [[ $TEST == 1 && ( ! -f "$REACT/node_modules/.package-lock.json" ||
      "$REACT/package-lock.json" -nt "$REACT/node_modules/.package-lock.json" ) ]]; then
  say "installing the React example's packages (npm ci)"
  (cd "$REACT" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

# Join the split model files into the cache and check their SHA-256 (seconds; once).
HF_HUB_OFFLINE=1 "$VENV/bin/python" -m thinnest.providers.models
say "ready: $("$TOOLS/livekit-server" --version), $("$VENV/bin/python" --version), thinnest $("$VENV/bin/thinnest" --version)$( ((PIPER)) && echo ", with piper and espeak-ng (GPL-3.0)")"
