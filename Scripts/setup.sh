#!/usr/bin/env bash
# Installs what Backprop needs on Debian or Ubuntu, if it is missing:
#   libopenblas-dev        matrix products (the OpenBLAS trait, on by default)
#   zlib1g-dev             reading the .gz files of MNIST and Fashion-MNIST
#   pkg-config             how SwiftPM finds both
#   dataset-fashion-mnist  the data set, under /usr/share/datasets/fashion-mnist
# The Swift toolchain itself is expected to be installed already.
set -euo pipefail

packages=(libopenblas-dev zlib1g-dev pkg-config dataset-fashion-mnist)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "setup: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
