#!/usr/bin/env bash
# `make train`: the whole pipeline on the embedded default, under one output
# directory ($RUN_DIR, runs/demo by default), with no network but 127.0.0.1:
#
#   demo-web   generate the synthetic web and serve it on 127.0.0.1:$DEMO_PORT
#   queries    the demo vocabulary (scripts/demo-queries.txt), plus WordNet
#              where it is installed (/usr/share/wordnet)
#   crawl      the synthetic web, robots.txt obeyed
#   match      captions containing a query, English pages only
#   balance    at most $DEMO_T pairs per query
#   download   the images, into WebDataset shards
#   stats      the funnel and the balance, report.html
#   train      a tiny CLIP for $DEMO_STEPS steps
#   eval       zero-shot on the held-out colour-shape pairs (one prompt and
#              an ensemble) and a linear probe
#
# A second run reuses every finished stage. Variables: WIT (the binary),
# RUN_DIR, DEMO_PAGES, DEMO_EVAL_PER_CLASS, DEMO_PORT (0: any free port), DEMO_T, DEMO_MODEL, DEMO_STEPS, DEMO_BATCH,
# DEMO_DEVICE (cuda where wit was built with it).
set -euo pipefail
cd "$(dirname "$0")/.."
WIT=${WIT:-target/debug/wit}
RUN_DIR=${RUN_DIR:-runs/demo}
DEMO_PAGES=${DEMO_PAGES:-16000}
DEMO_EVAL_PER_CLASS=${DEMO_EVAL_PER_CLASS:-20}
DEMO_PORT=${DEMO_PORT:-8917}
DEMO_T=${DEMO_T:-1200}
DEMO_MODEL=${DEMO_MODEL:-demo}
DEMO_STEPS=${DEMO_STEPS:-3900}
DEMO_BATCH=${DEMO_BATCH:-64}
DEMO_DEVICE=${DEMO_DEVICE:-cpu}
mkdir -p "$RUN_DIR"
WEB="$RUN_DIR/web"
TRAIN_RUN="$RUN_DIR/runs/$DEMO_MODEL"
TIMES="$RUN_DIR/times.tsv"
: > "$TIMES"
t0=$(date +%s)

# Runs one stage, says what it is, and records its wall time.
stage() {
    local name=$1
    shift
    echo
    echo "== $name"
    local start
    start=$(date +%s)
    "$@"
    printf '%s\t%s\n' "$name" "$(( $(date +%s) - start ))" >> "$TIMES"
}

server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

serve() {
    local web=(demo-web --out "$WEB" --pages "$DEMO_PAGES" --eval-per-class "$DEMO_EVAL_PER_CLASS")
    "$WIT" "${web[@]}"
    # The crawl's seed names the port, so a rerun keeps the port the crawl
    # was started on when DEMO_PORT=0 (any free port) asked for none.
    if [ "$DEMO_PORT" = 0 ] && [ -f "$WEB/port" ] && [ -e "$RUN_DIR/candidates" ]; then
        DEMO_PORT=$(cat "$WEB/port")
    fi
    # Only the crawl and the download read the web: once both are complete,
    # a rerun serves nothing (and needs no free port).
    if [ -f "$RUN_DIR/candidates/_manifest.json" ] && [ -f "$RUN_DIR/shards/_manifest.json" ]; then
        echo "reused: the crawl and the download are complete, so the demo web is not served"
        return 0
    fi
    local served="$WEB/.served"
    rm -f "$served"
    "$WIT" -q "${web[@]}" --serve --port "$DEMO_PORT" > "$served" &
    server_pid=$!
    # The server prints its URL once it is listening (port 0: the port it got).
    for _ in $(seq 300); do
        local url
        url=$(head -n 1 "$served" 2>/dev/null || true)
        if [ -n "$url" ]; then
            DEMO_PORT=${url##*:}
            DEMO_PORT=${DEMO_PORT%/}
            echo "$DEMO_PORT" > "$WEB/port"
            echo "serving $url (pid $server_pid)"
            return 0
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "error: the demo web could not be served on port $DEMO_PORT (DEMO_PORT=... picks another; 0: any free port)" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "error: the demo web did not start on port $DEMO_PORT" >&2
    return 1
}

queries() {
    if [ -d /usr/share/wordnet ]; then
        "$WIT" queries build --wordnet /usr/share/wordnet --include scripts/demo-queries.txt --dataset "$RUN_DIR"
    else
        echo "(WordNet is not installed in /usr/share/wordnet: the demo vocabulary alone)"
        "$WIT" queries import scripts/demo-queries.txt --dataset "$RUN_DIR"
    fi
}

train() {
    local resume=()
    if [ -f "$TRAIN_RUN/model.safetensors" ]; then
        echo "reused: $TRAIN_RUN/model.safetensors"
        return 0
    fi
    if [ -d "$TRAIN_RUN/checkpoints" ]; then
        resume=(--resume)
    fi
    "$WIT" train --dataset "$RUN_DIR" --run "$TRAIN_RUN" --model "$DEMO_MODEL" \
        --batch-size "$DEMO_BATCH" --steps "$DEMO_STEPS" --warmup 100 --lr 1e-3 \
        --checkpoint-every 500 --device "$DEMO_DEVICE" "${resume[@]}"
}

evaluate() {
    # The ensemble: templates in the captions' own styles, chosen on the
    # probe's training images (not the test images) by
    # scripts/choose-templates.sh, as CLIP's prompts were chosen on
    # validation data.
    "$WIT" eval --checkpoint "$TRAIN_RUN/model.safetensors" \
        --data "$WEB/eval/test" --train "$WEB/eval/train" \
        --templates scripts/demo-templates.txt --out "$RUN_DIR/eval" --device "$DEMO_DEVICE"
}

stage demo-web serve
stage queries queries
stage crawl "$WIT" crawl --seed "http://127.0.0.1:$DEMO_PORT/" --allow-private \
    --delay 0 --per-host 16 --max-depth 4 --part-urls 500 --dataset "$RUN_DIR"
stage match "$WIT" match --lang en --dataset "$RUN_DIR"
stage balance "$WIT" balance -t "$DEMO_T" --dataset "$RUN_DIR"
stage download "$WIT" download --allow-private --image-size 64 --resize-mode center_crop \
    --shard-size 1000 --per-host 16 --dataset "$RUN_DIR"
cleanup
server_pid=
stage stats "$WIT" stats "$RUN_DIR"
stage train train
stage eval evaluate

echo
echo "== summary: $(( $(date +%s) - t0 ))s in all"
echo "  this run's time per stage (seconds; a reused stage takes about none):"
while IFS=$'\t' read -r name secs; do
    printf '    %-9s %5s\n' "$name" "$secs"
done < "$TIMES"
"$WIT" status "$RUN_DIR"
