#!/usr/bin/env bash
# Chooses a prompt ensemble by greedy forward selection on labelled images
# that are not the test images (for the demo, the linear probe's training
# images): starting from none, adds the candidate template that most raises
# the ensemble's zero-shot top-1, until none raises it. Prints the chosen
# templates, one per line (the format `wit eval --templates` reads).
#
#   scripts/choose-templates.sh CHECKPOINT IMAGES CANDIDATES > templates.txt
#
# scripts/demo-templates.txt was made with
#   scripts/choose-templates.sh runs/demo/runs/demo/model.safetensors \
#       runs/demo/web/eval/train scripts/demo-template-candidates.txt
# after `make train` with its defaults. WIT picks the binary.
set -euo pipefail
[ $# -eq 3 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
checkpoint=$1 images=$2 candidates=$3
WIT=${WIT:-${CARGO_TARGET_DIR:-target}/debug/wit}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mapfile -t all < "$candidates"

# The ensemble's top-1 (a fraction) with the templates given as arguments.
score() {
    printf '%s\n' "$@" > "$work/templates.txt"
    "$WIT" -q eval --checkpoint "$checkpoint" --data "$images" --train "$images" \
        --templates "$work/templates.txt" --out "$work/eval" >/dev/null
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["zero_shot"]["ensemble"]["top1"])' \
        "$work/eval/eval.json"
}

in_chosen() {
    local c
    for c in "${chosen[@]}"; do
        [ "$c" = "$1" ] && return 0
    done
    return 1
}

chosen=()
best=0
while :; do
    pick= pick_score=$best
    for t in "${all[@]}"; do
        in_chosen "$t" && continue
        s=$(score "${chosen[@]}" "$t")
        if python3 -c 'import sys; sys.exit(not float(sys.argv[1]) > float(sys.argv[2]))' "$s" "$pick_score"; then
            pick=$t pick_score=$s
        fi
    done
    [ -n "$pick" ] || break
    chosen+=("$pick")
    best=$pick_score
    echo "added \"$pick\": top-1 $best" >&2
done
printf '%s\n' "${chosen[@]}"
