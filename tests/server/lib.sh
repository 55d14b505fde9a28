# The preamble of the server test scripts, sourced by each (`. "$(dirname "$0")/lib.sh"`): moves
# to the repository root and gives the checks that skip a test, with one "SKIP: " line and exit
# status 0, when what it needs is missing (run_tests.sh reports the line).
cd "$(dirname "$0")/../.." || exit 1
dir=tests/server

skip() {
  echo "SKIP: tests/server/$(basename "$0"): $*"
  exit 0
}

need_node() {
  command -v node >/dev/null 2>&1 || skip "node is not installed (tools/install-deps.sh installs it)"
}

# need_npm PACKAGE...: npm ci installs the packages from package-lock.json on first use, so later
# runs need no network; offline and without them the test is skipped. One script at a time looks
# and installs (flock): with NLLM_TEST_JOBS > 1 on a fresh checkout the server tests start
# together, and one that saw a package's package.json while another's npm ci was still writing
# the rest loaded a half-installed client (ERR_MODULE_NOT_FOUND).
need_npm() {
  exec 9>"$dir/node_modules.lock"
  flock 9
  for pkg in "$@"; do
    [ -f "$dir/node_modules/$pkg/package.json" ] && continue
    command -v npm >/dev/null 2>&1 ||
      skip "npm is not installed, and node_modules lacks $pkg (tools/install-deps.sh installs it)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1) ||
      skip "cannot install the npm packages $* (npm ci in $dir)"
    break
  done
  flock -u 9
  exec 9>&-
}
