#!/usr/bin/env bash
# A/B of two builds in one script: FineMem's frag benchmark, the heap
# benchmark and LARGE blocks (WORKLOADS below) at 1 and 2 processes, the two
# builds run interleaved (A B A B ...), median of REPS repetitions each. Build A is a git
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

# Workloads (WORKLOADS, space-separated; default below): micro:C (FineMem's
# frag pattern, class C, ops/s), heap:S (heap pattern, S-byte objects, ns per
# pair), large (LARGE 4 MiB blocks, bench/large-pattern.mjs, ns per pair, one
# process). PROCS (default "1 2") applies to micro and heap. A build whose
# `bench heap` knows --warmup-rounds runs it with 0, as a build without it
# does: both sides start cold.
workloads=${WORKLOADS:-"micro:0 micro:4 micro:9 heap:64 heap:1024 large"}
procs_list=${PROCS:-"1 2"}

heap_flags() { node "$1/dist/src/cli/main.js" bench heap --help 2>/dev/null | grep -q -- --warmup-rounds && echo "--warmup-rounds 0" || true; }
first_json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const k=process.argv[1];const r=s.trim().split("\n").map(l=>JSON.parse(l)).find(r=>r[k]);console.log(r[k])})' "$1"; }

# run DIR WORKLOAD PROCS -> one number
run() {
  local dir=$1 what=$2 procs=$3
  case $what in
    micro:*) node "$dir/dist/src/cli/main.js" bench micro --class "${what#micro:}" --procs "$procs" --epochs 2000 --json 2>/dev/null | first_json opsPerSec ;;
    heap:*) node "$dir/dist/src/cli/main.js" bench heap --sizes "${what#heap:}" --procs "$procs" --reps 1 $(heap_flags "$dir") --json 2>/dev/null | first_json dmemNsPerPair ;;
    large) node "$root/bench/large-pattern.mjs" "$dir" ;;
  esac
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# WORKLOADS=trace instead: FineMem's stage test (`bench trace --procs 2
# --seed 7`) on every trace of TRACES (default ../shared/traces), A then B per
# trace, REPS times; per trace the medians of the mean and p50 allocation
# latency (ns), then the median over the traces of B/A.
if [ "$workloads" = trace ]; then
  traces=${TRACES:-"$root/../shared/traces"}
  trace_run() { node "$1/dist/src/cli/main.js" bench trace --procs 2 --seed 7 --json "$2" 2>/dev/null \
    | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=s.trim().split("\n").map(l=>JSON.parse(l)).find(r=>r.latency);console.log(r?r.latency.meanNs+" "+r.latency.p50Ns:"NaN NaN")})'; }
  ratios_mean=(); ratios_p50=()
  printf '%-28s %12s %12s %10s %10s\n' trace "A mean ns" "B mean ns" "A p50" "B p50"
  for f in "$traces"/trace.*; do
    am=(); ap=(); bm=(); bp=()
    for ((i = 0; i < reps; i++)); do
      read -r m p < <(trace_run "$wt" "$f"); am+=("$m"); ap+=("$p")
      read -r m p < <(trace_run "$root" "$f"); bm+=("$m"); bp+=("$p")
    done
    ma=$(printf '%s\n' "${am[@]}" | median); mb=$(printf '%s\n' "${bm[@]}" | median)
    pa=$(printf '%s\n' "${ap[@]}" | median); pb=$(printf '%s\n' "${bp[@]}" | median)
    printf '%-28s %12.0f %12.0f %10.0f %10.0f\n' "$(basename "$f")" "$ma" "$mb" "$pa" "$pb"
    if [ "$ma" != NaN ] && [ "$mb" != NaN ]; then
      ratios_mean+=("$(node -e "console.log(($mb)/($ma))")"); ratios_p50+=("$(node -e "console.log(($pb)/($pa))")")
    fi
  done
  echo "traces compared: ${#ratios_mean[@]}; median B/A of the mean latency $(printf '%s\n' "${ratios_mean[@]}" | median), of the p50 $(printf '%s\n' "${ratios_p50[@]}" | median)"
  exit 0
fi

printf '%-32s %14s %14s %8s\n' workload "A ($ref)" "B (this tree)" "B/A"
for what in $workloads; do
  for procs in $procs_list; do
    [ "$what" = large ] && [ "$procs" != 1 ] && continue
    a=(); b=()
    for ((i = 0; i < reps; i++)); do
      a+=("$(run "$wt" "$what" "$procs")")
      b+=("$(run "$root" "$what" "$procs")")
    done
    ma=$(printf '%s\n' "${a[@]}" | median)
    mb=$(printf '%s\n' "${b[@]}" | median)
    case $what in micro:*) unit="ops/s" ;; *) unit="ns/pair" ;; esac
    printf '%-32s %14.0f %14.0f %8.3f\n' "$what $unit, $procs proc" "$ma" "$mb" "$(node -e "console.log(($mb)/($ma))")"
  done
done
