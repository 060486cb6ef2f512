#!/usr/bin/env bash
# A/B of two builds in one script: FineMem's frag benchmark (class 0) and the
# heap benchmark (64 B objects) at 1 and 2 processes, the two builds run
# interleaved (A B A B ...), median of REPS repetitions each. Build A is a git
# ref, checked out and built in a temporary worktree; build B is this
# checkout's dist/ (run `npm run build` first).
#
#   bench/ab.sh REF [REPS]      e.g. bench/ab.sh db65a2a 5
#
# Prints one line per workload: median A, median B, B/A. Numbers from one run
# of this script are comparable with each other only.
set -euo pipefail
ref=${1:?usage: bench/ab.sh REF [REPS]}
reps=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
wt=$(mktemp -d /tmp/dmem-ab-XXXXXX)
cleanup() { git -C "$root" worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"; }
trap cleanup EXIT
git -C "$root" worktree add --detach "$wt" "$ref" >/dev/null 2>&1
(cd "$wt" && ln -s "$root/node_modules" node_modules && npx asc assembly/index.ts --target release >/dev/null && npx tsc -p tsconfig.json >/dev/null)

# micro A|B PROCS -> ops/s ; heap A|B PROCS -> ns per alloc+free pair
run() {
  local dir=$1 what=$2 procs=$3
  if [ "$what" = micro ]; then
    node "$dir/dist/src/cli/main.js" bench micro --class 0 --procs "$procs" --epochs 2000 --json 2>/dev/null \
      | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=s.trim().split("\n").map(l=>JSON.parse(l)).find(r=>r.opsPerSec);console.log(r.opsPerSec)})'
  else
    node "$dir/dist/src/cli/main.js" bench heap --sizes 64 --procs "$procs" --reps 1 --json 2>/dev/null \
      | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=s.trim().split("\n").map(l=>JSON.parse(l)).find(r=>r.dmemNsPerPair);console.log(r.dmemNsPerPair)})'
  fi
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

printf '%-28s %14s %14s %8s\n' workload "A ($ref)" "B (this tree)" "B/A"
for what in micro heap; do
  for procs in 1 2; do
    a=(); b=()
    for ((i = 0; i < reps; i++)); do
      a+=("$(run "$wt" $what $procs)")
      b+=("$(run "$root" $what $procs)")
    done
    ma=$(printf '%s\n' "${a[@]}" | median)
    mb=$(printf '%s\n' "${b[@]}" | median)
    label=$([ $what = micro ] && echo "class 0, ops/s" || echo "heap 64 B, ns/pair")
    printf '%-28s %14.0f %14.0f %8.3f\n' "$label, $procs proc" "$ma" "$mb" "$(node -e "console.log(($mb)/($ma))")"
  done
done
