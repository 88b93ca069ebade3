#!/bin/sh
# Installs the npm `sqslite` SQS emulator (in memory, no durability, no
# signature checks) into a directory of its own (not the repository), for
# bench/sqs, which runs it beside spated as the peer.
# Usage: install-sqslite.sh [DIR]; DIR defaults to $SPATE_SQSLITE, else
# /var/tmp/spate-sqslite. A second run with the package in place does nothing.
set -eu
dir=${1:-${SPATE_SQSLITE:-/var/tmp/spate-sqslite}}
[ -f "$dir/node_modules/sqslite/package.json" ] && exit 0
mkdir -p "$dir"
[ -f "$dir/package.json" ] || printf '{"name":"spate-sqslite","private":true}\n' >"$dir/package.json"
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error sqslite@2 >&2
