#!/bin/sh
# Installs the Debian packages spate builds, tests and benchmarks with.
# Only what is missing is installed, so a second run costs one dpkg query.
# Works as root or through sudo.
set -eu

PACKAGES="build-essential cmake pkg-config
libuv1-dev libhttp-parser-dev libsqlite3-dev libcjson-dev libssl-dev
libcurl4-openssl-dev libseccomp-dev libarchive-dev
python3-pytest python3-pytest-xdist python3-pytest-timeout nginx-light wrk nats-server libnats-dev gnuplot-nox
autoconf automake libtool clang libclang-rt-14-dev
prometheus chromium libinih-dev libsystemd-dev scdoc iproute2
libhiredis-dev redis-server librabbitmq-dev rabbitmq-server librdkafka-dev kcat
libmosquitto-dev mosquitto libicu-dev libpython3-dev openssl ca-certificates
awscli python3-boto3 nodejs python3-cryptography"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-deps: missing packages:$missing; run as root or install sudo" >&2
    exit 1
fi

echo "install-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
