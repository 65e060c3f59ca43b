#!/usr/bin/env bash
# Times the everyday commands with nothing changed since the last build (the figures in the README's
# "Install and build"): a no-op `dotnet build Mtp.sln`, `dotnet run --project src/Cli -- --help`, and the latter's
# parts (`--no-build`, the restore alone). The commands run interleaved, so a slow spell of the machine hits all
# of them alike.
# usage: tools/build-times.sh [RUNS]   (default 9)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-9}"

commands=(
  "dotnet build Mtp.sln -v q -nologo"
  "dotnet run --project src/Cli -- --help"
  "dotnet run --no-build --project src/Cli -- --help"
  "dotnet msbuild src/Cli -t:Restore -v q -nologo"
)

dotnet build Mtp.sln -v q -nologo > /dev/null
times="$(mktemp)"
trap 'rm -f "$times"' EXIT
for ((run = 1; run <= runs; run++)); do
  for i in "${!commands[@]}"; do
    start=$(date +%s.%N)
    ${commands[$i]} > /dev/null 2>&1 || { echo "failed: ${commands[$i]}" >&2; exit 1; }
    end=$(date +%s.%N)
    awk -v i="$i" -v s="$start" -v e="$end" 'BEGIN { print i, e - s }' >> "$times"
  done
done

echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $runs runs each (seconds):"
for i in "${!commands[@]}"; do
  sorted=($(awk -v i="$i" '$1 == i { print $2 }' "$times" | sort -n))
  n=${#sorted[@]}
  printf '  min %.2f  median %.2f  max %.2f  %s\n' "${sorted[0]}" "${sorted[$((n / 2))]}" "${sorted[$((n - 1))]}" "${commands[$i]}"
done
