#!/usr/bin/env bash
set -euo pipefail
name="${1:-world}"
echo "hello, ${name}"
