#!/usr/bin/env bash
# Screenshots made by a headless browser, not by hand: the built site's front page and config
# reference, and TensorBoard (scalars, HParams, custom scalars) over a sweep folder.
#   CHROMIUM=/path/to/chromium-headless-shell scripts/screenshots.sh <sweep dir> [out dir]
# Needs a Chromium (Debian's chromium-headless-shell works; playwright's download is another way).
set -euo pipefail
sweep=${1:?usage: scripts/screenshots.sh <sweep dir> [out dir]}
out=${2:-docs/images/screenshots}
chromium=${CHROMIUM:-chromium-headless-shell}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
shot() {  # shot <url> <png>: the page after its scripts ran (virtual time), 1280 x 900
  "$chromium" --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,900 \
    --virtual-time-budget=15000 --screenshot="$2" "$1" >/dev/null 2>&1
  test -s "$2"
}
site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 "$py" -m mkdocs build --strict -q --site-dir "$site"
shot "file://$site/index.html" "$out/site-front.png"
shot "file://$site/reference/config/index.html" "$out/site-config-reference.png"
port=6107
"$py" -m tensorboard.main --logdir "$sweep" --port $port --bind_all >/dev/null 2>&1 &
tb=$!
trap 'kill $tb' EXIT
for _ in $(seq 60); do curl -fs "http://127.0.0.1:$port" >/dev/null && break; sleep 1; done
shot "http://127.0.0.1:$port/#timeseries" "$out/tensorboard-scalars.png"
shot "http://127.0.0.1:$port/#hparams" "$out/tensorboard-hparams.png"
shot "http://127.0.0.1:$port/#custom_scalars" "$out/tensorboard-custom-scalars.png"
ls "$out"
