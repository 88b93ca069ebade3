#!/bin/sh
# Installs the AWS SDK for JavaScript v3's Lambda and SQS clients from the npm
# registry into a directory of its own (not the repository), for the SigV4
# and SQS tests (tests/integration/test_sigv4.py, test_sqs.py).
# Usage: install-aws-sdk-js.sh [DIR]; DIR defaults to $SPATE_AWS_SDK_JS, else
# /var/tmp/spate-aws-sdk-js. A second run with the packages in place does nothing.
set -eu
dir=${1:-${SPATE_AWS_SDK_JS:-/var/tmp/spate-aws-sdk-js}}
[ -f "$dir/node_modules/@aws-sdk/client-lambda/package.json" ] &&
    [ -f "$dir/node_modules/@aws-sdk/client-sqs/package.json" ] && exit 0
mkdir -p "$dir"
[ -f "$dir/package.json" ] || printf '{"name":"spate-aws-sdk-js","private":true}\n' >"$dir/package.json"
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error @aws-sdk/client-lambda \
    @aws-sdk/client-sqs >&2
