#!/usr/bin/env bash
# Renders the `backprop explain --html` page in headless Chromium, at a phone's width (390 px) and a
# desktop's (1280 px), for a few steps, so that a person can look at what a learner sees.
#
# Usage: Scripts/screenshot-explain.sh [PAGE.html [OUTPUT_FOLDER [STEP...]]]
#   PAGE.html       the page to render; default: a page written now by `backprop explain` (debug build)
#   OUTPUT_FOLDER   where the PNGs go (default .build/explain-screenshots), named step-S-WIDTH.png
#   STEP...         the steps to render (default: 0 4 7 10), opened through the page's #step=S
#
# Installs Debian's `chromium` with apt-get if it is missing (as root, or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

page="${1:-}"
out="${2:-.build/explain-screenshots}"
if [ "$#" -gt 2 ]; then
    shift 2
    steps=("$@")
else
    steps=(0 4 7 10)
fi
mkdir -p "$out"

browser=""
for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then
        browser="$candidate"
        break
    fi
done
if [ -z "$browser" ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "screenshot-explain: installing chromium" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
    browser=chromium
fi

if [ -z "$page" ]; then
    page="$out/walkthrough.html"
    swift build --product backprop >/dev/null
    "$(swift build --show-bin-path)/backprop" explain --stats --html "$page" >/dev/null
fi
url="file://$(cd "$(dirname "$page")" && pwd)/$(basename "$page")"

for width in 390 1280; do
    if [ "$width" -eq 390 ]; then height=2400; else height=1000; fi
    for step in "${steps[@]}"; do
        file="$out/step-$step-$width.png"
        "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
            --virtual-time-budget=3000 --window-size="$width,$height" --screenshot="$file" \
            "$url#step=$step" >/dev/null 2>&1
        echo "$file"
    done
done
