#!/usr/bin/env bash
# Installs every test dependency (idempotently) and runs every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
# Each job's own network namespace gets outbound access through slirp4netns.
command -v slirp4netns >/dev/null 2>&1 || need_apt+=(slirp4netns)
# sem-service runs the machine's own servers inside a job (PostgreSQL comes with postgres.sh).
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v memcached >/dev/null 2>&1 || need_apt+=(memcached)
command -v mariadbd >/dev/null 2>&1 || need_apt+=(mariadb-server)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
# Jobs in containers (agent.containers) run with Podman; runc where crun cannot (hybrid cgroups).
command -v podman >/dev/null 2>&1 || need_apt+=(podman)
command -v runc >/dev/null 2>&1 || need_apt+=(runc)
# The seed's hand-written heal recipe renders its prompt with envsubst.
command -v envsubst >/dev/null 2>&1 || need_apt+=(gettext-base)
# The web UI's browser tests run Debian's Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The heal tests and the heal corpus (crates/cli/tests/heal_corpus.toml) break and fix real
# projects with the tools' own fix modes: shell, C, Go, Ruby here; Python and JavaScript below.
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
command -v shfmt >/dev/null 2>&1 || need_apt+=(shfmt)
command -v clang-format >/dev/null 2>&1 || need_apt+=(clang-format)
command -v go >/dev/null 2>&1 || need_apt+=(golang-go)
command -v rubocop >/dev/null 2>&1 || need_apt+=(rubocop)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# The demo's sample project and the heal tests format Rust code.
command -v rustfmt >/dev/null 2>&1 || rustup component add rustfmt
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# Jobs in the sandbox run the machine's Python tools (the runner's tests run pytest in one;
# the heal corpus ruff, black and isort) and a global prettier.
python3 -c 'import pytest' 2>/dev/null || python3 -m pip install -q pytest
for tool in ruff black isort; do
  command -v "$tool" >/dev/null 2>&1 || python3 -m pip install -q "$tool"
done
command -v prettier >/dev/null 2>&1 || npm install -g --silent --no-audit --no-fund prettier@3
# The MCP tests drive Salve with real clients (the MCP Inspector CLI, the Python MCP SDK).
export SALVE_TEST_TOOLS="${SALVE_TEST_TOOLS:-$(bash scripts/test-tools.sh)}"

# The conformance data lives beside the checkout (../shared), as in CI.
if [ -z "${SALVE_CONFORMANCE:-}" ] && [ ! -d ../shared/conformance ]; then
  echo "scripts/test.sh: ../shared/conformance not found; check out shared/ beside the repository or set SALVE_CONFORMANCE" >&2
  exit 2
fi

# The store tests run against a real PostgreSQL too.
export SALVE_TEST_POSTGRES_URL="${SALVE_TEST_POSTGRES_URL:-$(bash scripts/postgres.sh)}"

cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
# One closing line for the whole run (cargo's last line is the doc-tests' own count).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
