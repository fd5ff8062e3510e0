#!/usr/bin/env bash
set -euo pipefail
[ "$(bash bin/greet.sh)" = "hello, world" ]
[ "$(bash bin/greet.sh salve)" = "hello, salve" ]
echo ok
