#!/usr/bin/env bash
# The long trainings that outlive a session (lanes/README.md).
#   lanes/lanes.sh start    worktree at the lanes' commit, saved states restored, lanes started
#   lanes/lanes.sh save     the lanes' resumable states copied into lanes/state/ (commit them)
#   lanes/lanes.sh status   what each lane runs now and how far its trainings are
#   lanes/lanes.sh pause | resume    SIGSTOP / SIGCONT (a quiet machine for a timing)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tree="${LANES_TREE:-$(dirname "$repo")/lane}"
state="$repo/lanes/state"
commit="$(awk '$1 == "commit" {print $2}' "$repo/lanes/lanes.txt")"
cached=$(awk '$1 == "data" {$1 = ""; print}' "$repo/lanes/lanes.txt")
zoo_cached=$(awk '$1 == "cache" {$1 = ""; print}' "$repo/lanes/lanes.txt")
zoo="${CAMTRACE_CACHE:-$HOME/.cache/camtrace/zoo}"
mapfile -t lanes < <(awk '$1 == "lane" {$1 = ""; sub(/^ /, ""); print}' "$repo/lanes/lanes.txt")

running() { pgrep -f "main\(\) run" || true; }

case "${1:-status}" in
start)
  [ -z "$(running)" ] || { echo "lanes already running: lanes/lanes.sh status"; exit 1; }
  python -c "import camtrace, torch" 2>/dev/null \
    || { echo "install camtrace's dependencies first (README: Install)"; exit 1; }
  [ -d "$tree" ] || git -C "$repo" worktree add -q --detach "$tree" "$commit"
  # nothing runs, so the lanes' tree may move to their commit (runs/ and logs are untracked)
  git -C "$tree" checkout -q --detach "$commit"
  mkdir -p "$repo/data"
  [ -e "$tree/data" ] || ln -s "$repo/data" "$tree/data"
  if [ -d "$state/runs" ]; then mkdir -p "$tree/runs" && cp -a "$state/runs/." "$tree/runs/"; fi
  if [ -d "$state/data" ]; then cp -a "$state/data/." "$repo/data/"; fi
  # zoo models trained into the user cache, saved in parts under 25 MB: joined back
  for p in "$state"/cache/*.part-00; do
    [ -f "$p" ] || continue
    f="$(basename "${p%.part-00}")"
    mkdir -p "$zoo" && cat "${p%-00}"-* > "$zoo/$f.tmp" && mv "$zoo/$f.tmp" "$zoo/$f"
  done
  # every saved state was trained on SimCam-Bench as recorded; a machine that renders it
  # otherwise (another ISA's float order: an AVX2-only EPYC against the AVX512 one that froze
  # it) would have them refused as trained on other data and trained afresh: check it first
  if ! (cd "$tree" && PYTHONPATH="$tree/src" python -c 'from camtrace.cli import main; main()' \
      bench --quiet); then
    echo "lanes not started: this machine does not render SimCam-Bench as recorded, so the"
    echo "saved states would be refused and trained afresh; they stay as committed"
    exit 1
  fi
  for lane in "${lanes[@]}"; do
    cmd=""
    for c in $lane; do
      cmd+="python -c 'from camtrace.cli import main; main()' run $c --quiet >> $c.log 2>&1; "
    done
    (cd "$tree" && PYTHONPATH="$tree/src" OMP_NUM_THREADS=1 nohup sh -c "$cmd" >/dev/null 2>&1 &)
    echo "started: $lane"
  done ;;
save)
  [ -d "$tree/runs" ] || { echo "no lanes ran here ($tree/runs): nothing to save"; exit 1; }
  rm -rf "$state" && mkdir -p "$state"  # only what the lanes hold now (git keeps the rest)
  # a run folder's resumable files: training states, finished weights, curves and logs, never
  # patch stores or images (regenerated deterministically from SimCam-Bench)
  for c in $(printf '%s ' "${lanes[@]}"); do
    [ -d "$tree/runs/$c" ] || continue
    (cd "$tree/runs" && find "$c" -name 'patches*' -prune -o -type f -size -25M \( \
      -name '*.safetensors' -o -name '*.json' -o -name '*.csv' \) -print) | while read -r f; do
      mkdir -p "$state/runs/$(dirname "$f")" && cp -p "$tree/runs/$f" "$state/runs/$f"
    done
    (cd "$tree/runs" && find "$c" -type f -size +25M -printf 'not saved (over 25 MB): %p\n')
  done
  # a training whose weights were not saved starts afresh: its curves alone would mislead
  find "$state/runs" -name log.json -print | while read -r f; do
    ls "$(dirname "$f")"/*.safetensors >/dev/null 2>&1 || rm -r "$(dirname "$f")"
  done
  # the caches the lanes' configs train into the data folder (every file under 25 MB: their
  # images are inputs whose digests a resumed training checks, and float order differs between
  # machines; a finished SpoC embedder is its float16 weights, its 81 MB training state stays)
  for g in $cached; do
    for d in "$repo"/data/$g; do
      [ -d "$d" ] || continue
      (cd "$repo/data" && find "$(basename "$d")" -type f -size -25M -print) | while read -r f; do
        mkdir -p "$state/data/$(dirname "$f")" && cp -p "$repo/data/$f" "$state/data/$f"
      done
      (cd "$repo/data" && find "$(basename "$d")" -type f -size +25M -printf 'not saved (over 25 MB): %p\n')
    done
  done
  # zoo models trained into the user cache for a later config (`cache` in lanes.txt: a
  # finished model, e.g. Xception's 83 MB for `spoc`), in 24 MB parts that start joins back
  for n in $zoo_cached; do
    for f in "$zoo/$n".safetensors "$zoo/$n".sha256; do
      [ -f "$f" ] || { echo "not in the cache: $f"; continue; }
      mkdir -p "$state/cache" && split -b 24M -d "$f" "$state/cache/$(basename "$f").part-"
    done
  done
  du -sh "$state" ;;
status)
  running | xargs -r ps -o pid,etime,time,args -p | cut -c1-120
  for f in "$repo"/data/spoc-embedder-*/log.json; do
    [ -f "$f" ] && python -c "import json, sys; l = json.load(open(sys.argv[1]))['losses']; \
print(sys.argv[1].split('/data/')[1], l[-1] if l else 'no iteration yet')" "$f"
  done
  for f in "$tree"/runs/*/generators/*/log.json "$tree"/runs/*/spoc/*/*/log.json; do
    [ -f "$f" ] && python - "$f" <<'P'
import json, sys
log = json.load(open(sys.argv[1]))
last = (log.get("validation") or [{}])[-1]
print(sys.argv[1].split("/runs/")[1], {k: last[k] for k in list(last)[:5]})
P
  done ;;
pause) running | xargs -r kill -STOP ;;
resume) running | xargs -r kill -CONT ;;
*) echo "usage: lanes/lanes.sh start|save|status|pause|resume"; exit 2 ;;
esac
