#!/usr/bin/env bash
# Renders the `backprop explain --html` page in headless Chromium, at a phone's width (390 px) and a
# desktop's (1280 px), for a few steps, so that a person can look at what a learner sees.
#
# Usage: Scripts/screenshot-explain.sh [--layers SPEC] [PAGE.html [OUTPUT_FOLDER [STEP...]]]
#   --layers SPEC   write the page for this model (a description or a preset: seed, mlp, cnn) on 2
#                   rows, instead of the seed's model on 5; ignored when PAGE.html is given
#   PAGE.html       the page to render; default ("" too): a page written now by `backprop explain`
#                   (debug build)
#   OUTPUT_FOLDER   where the PNGs go (default .build/explain-screenshots), named step-S-WIDTH.png
#   STEP...         the steps to render (default: 0 4 7 10), opened through the page's #step=S;
#                   `full` renders the whole page at step 0, as tall as it is (a convnet's feature
#                   maps and kernels are at the bottom), named full-WIDTH.png
#
# Installs Debian's `chromium` with apt-get if it is missing (as root, or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

layers=""
if [ "${1:-}" = "--layers" ]; then
    layers="${2:?--layers needs a description or a preset name}"
    shift 2
fi
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
    model=()
    if [ -n "$layers" ]; then model=(--layers "$layers" --rows 2); fi
    "$(swift build --show-bin-path)/backprop" explain --stats "${model[@]}" --html "$page" >/dev/null
fi
url="file://$(cd "$(dirname "$page")" && pwd)/$(basename "$page")"

# How tall the whole page is at `width`, in CSS pixels: measured by the page itself in a frame of
# that width (headless Chromium's window is never narrower than 500 px, a frame can be).
page_height() {
    local width="$1" folder wrapper
    folder="$(mktemp -d)"
    wrapper="$(dirname "$page")/.screenshot-measure-$$.html"
    cat >"$wrapper" <<EOF
<!DOCTYPE html><html><body><iframe src="$(basename "$page")" style="width:${width}px;height:800px;border:0"
onload="document.body.setAttribute('data-height', this.contentDocument.documentElement.scrollHeight)"></iframe></body></html>
EOF
    "$browser" --headless --no-sandbox --disable-gpu --allow-file-access-from-files --user-data-dir="$folder" \
        --window-size=1400,900 --virtual-time-budget=3000 --dump-dom "file://$(cd "$(dirname "$wrapper")" && pwd)/$(basename "$wrapper")" \
        2>/dev/null | sed -n 's/.*data-height="\([0-9]*\)".*/\1/p' | head -1
    rm -rf "$folder" "$wrapper"
}

for width in 390 1280; do
    if [ "$width" -eq 390 ]; then height=2400; else height=1000; fi
    for step in "${steps[@]}"; do
        if [ "$step" = "full" ]; then
            file="$out/full-$width.png"
            tall="$(page_height "$width")"
            target="$url#step=0"
        else
            file="$out/step-$step-$width.png"
            tall="$height"
            target="$url#step=$step"
        fi
        profile="$(mktemp -d)"
        "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
            --user-data-dir="$profile" --virtual-time-budget=3000 --window-size="$width,${tall:-$height}" \
            --screenshot="$file" "$target" >/dev/null 2>&1
        rm -rf "$profile"
        echo "$file"
    done
done
