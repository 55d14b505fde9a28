#!/bin/sh
# Installs the Debian packages nativellm needs. Idempotent: does nothing (and needs no network)
# when everything is already installed. Run as root (or with sudo).
#
#   tools/install-deps.sh          what building and running need (compiler, OpenBLAS's serial
#                                  build, PCRE2, utf8proc, cJSON, libmicrohttpd for nllm serve,
#                                  libedit for nllm chat's line editing)
#   tools/install-deps.sh --test   the above plus what the full test suite needs: Check, clang
#                                  and its sanitizer runtimes, the aarch64 cross compiler and
#                                  qemu (NEON tests), chromium and node/npm (nllm serve's tests),
#                                  Python's jsonschema, jinja2 and numpy (reference checks of grammars,
#                                  chat templates and the MoE models)
set -eu
BUILD_PKGS="build-essential gcc pkg-config make python3 binutils
libopenblas-serial-dev libpcre2-dev libutf8proc-dev libcjson-dev
libmicrohttpd-dev libedit-dev"
TEST_PKGS="check libsubunit-dev clang libomp-dev libclang-rt-dev
chromium
python3-jsonschema
python3-jinja2
python3-numpy
gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
case "${1:-}" in
  "") PKGS=$BUILD_PKGS ;;
  --test) PKGS="$BUILD_PKGS $TEST_PKGS" ;;
  *) echo "usage: tools/install-deps.sh [--test]" >&2; exit 2 ;;
esac
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# nllm serve's tests drive it with node and the openai npm client (tests/server/run.sh
# installs the client); Debian's npm comes with its nodejs.
if [ "${1:-}" = --test ]; then
  command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
fi
if [ -z "$missing" ]; then
  echo "install-deps: all packages present"
  exit 0
fi
echo "install-deps: installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
