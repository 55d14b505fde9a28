#!/bin/sh
# Installs the Debian packages nativellm needs to build and test. Idempotent: does nothing
# (and needs no network) when everything is already installed. Run as root (or with sudo).
set -eu
PKGS="build-essential gcc clang pkg-config make python3 binutils
check libsubunit-dev
libopenblas-dev libpcre2-dev libutf8proc-dev libcjson-dev
libomp-dev libclang-rt-dev
libmicrohttpd-dev chromium
python3-jsonschema
python3-jinja2
gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# nllm serve's tests drive it with node and the openai npm client (tests/server/run.sh
# installs the client); Debian's npm comes with its nodejs.
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
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
