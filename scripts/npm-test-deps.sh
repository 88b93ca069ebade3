#!/bin/sh
# Installs the npm packages the integration tests drive spate with (the
# AWS SDK for JavaScript's Lambda client) into DIR/node_modules; tests find
# them with NODE_PATH. tests/integration/test_lambda_invoke.py runs it into
# $SPATE_BUILD/npm when they are missing; `make deps` runs it too.
set -eu
dir=${1:?usage: npm-test-deps.sh DIR}
mkdir -p "$dir"
exec npm install --no-audit --no-fund --no-save --prefix "$dir" "@aws-sdk/client-lambda@3"
