#!/usr/bin/env bash
# The offline demo: generate a small synthetic library, index it with the shipped
# synthetic-shapes model, list it, search it, and pick frames from the long video.
# Run it with `make demo` (which installs everything first). Output goes to demo-out/.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-demo-out}
DB="$OUT/framedex.db"
rm -rf "$OUT"
mkdir -p "$OUT/library"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Render a synthetic library (coloured shapes, hard cuts, known truth)"
for spec in examples/specs/*.json; do
  framedex synth "$spec" "$OUT/library/$(basename "${spec%.json}").mp4"
done
printf 'not a video' > "$OUT/library/broken.mp4"   # a bad file: reported, the rest go on

step "2. Index it once (1 frame per second, synthetic-shapes model, offline)"
framedex index "$OUT/library" --db "$DB" --model synthetic-shapes

step "3. Re-index: unchanged content is a no-op"
framedex index "$OUT/library" --db "$DB"

step "4. What is indexed"
framedex videos --db "$DB"

LONG="$OUT/library/long_needles.mp4"
CHECK="python3 scripts/demo_check.py"  # what the truth files say is there, hit or miss
step "5. Search the whole library (needles in the long video: purple star at 300 s and 1020 s, orange triangle at 610 s)"
framedex search "a purple star" --db "$DB" --limit 5
framedex search "a purple star" --db "$DB" --limit 5 --json | $CHECK search star purple
framedex search "an orange triangle" --db "$DB" --limit 3
framedex search "an orange triangle" --db "$DB" --limit 3 --json | $CHECK search triangle orange
echo "-- the same search, one row per video (its best moment, and how many moments pass --threshold):"
framedex search "an orange triangle" --db "$DB" --limit 3 --group-by video

step "6. Pick 8 frames of the 20-minute video for a video LLM, with three samplers"
for sampler in uniform bolt aks; do
  echo "-- $sampler"
  framedex select "$LONG" "when does the purple star appear?" --db "$DB" \
    --sampler "$sampler" --budget 8 --plot "$OUT/select_$sampler.png" \
    --frames-out "$OUT/frames_$sampler" --json > "$OUT/select_$sampler.json"
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print("  " + ", ".join(f"{t:.0f}s" for t in d["timestamps"]) + "  (" + d["cost"]["text"] + ")")' "$OUT/select_$sampler.json"
  $CHECK select star purple < "$OUT/select_$sampler.json"
done

step "7. The same question under a token budget (Q-Frame tiers: a few frames at high resolution)"
framedex select "$LONG" "when does the purple star appear?" --db "$DB" --sampler qframe --tokens 2048

step "8. Every query is logged: latency per sampler, and SQL over the log"
framedex stats --db "$DB"
framedex sql "select kind, sampler, count(*) as n, round(median(latency_ms), 1) as p50_ms from query_log group by 1, 2 order by 1, 2" --db "$DB"

printf '\nPlots: %s/select_*.png   frames: %s/frames_*/\n' "$OUT" "$OUT"

step "9. See it in a browser (the web viewer; nothing is started for you)"
VID=$(framedex videos --db "$DB" --json | python3 -c 'import json, sys; print(next(v["video_id"] for v in json.load(sys.stdin) if v["path"].endswith("long_needles.mp4")))')
printf '  framedex serve --db %s\n' "$DB"
printf '  then open  http://127.0.0.1:8000/?q=a+purple+star\n'
printf '        and  http://127.0.0.1:8000/videos/%s?q=when+does+the+purple+star+appear%%3F&sampler=aks&budget=8\n' "$VID"
