#!/usr/bin/env bash
# Same-run comparison of a training step: `mtp bench train` (ours) against eager_step.py (PyTorch eager, transformers'
# model + one MTP depth) on the same converted fixture, config, batch (2 x 64) and thread count (1), interleaved
# (ours, eager, ours, eager, ...) so both see the same load. Prints one JSON line per run, then the medians and ratios.
# Both time steady steps: ours after its JIT warm-up (bench train's default: untimed steps until nothing was compiled for
# 0.5 s, typically 40-90 steps), eager after 50 untimed steps.
# Usage (as root): tools/eager-step/run.sh [ROOT_DIR] [ROUNDS]   (ROOT: the fixture generator's root with transformers,
#   fixtures/generate/README.md; OpenBLAS in it: apt-get install libopenblas0-pthread)
# FIXTURES (default "deepseek-v3 qwen3.5-moe glm-4.5 deepseek-v3.2") and DTYPES (default "f32 bf16") choose the runs;
# MTP names the built CLI (default: this checkout's Release build, `dotnet build src/Cli -c Release`).
# /proc is mounted in the root for the runs (torch's cpuinfo needs it to pick its AVX2 kernels) and unmounted after.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$(dirname "$here")")"
root="${1:-${TMPDIR:-/tmp}/mtp-trixie}"
rounds="${2:-3}"
fixtures="${FIXTURES:-deepseek-v3 qwen3.5-moe glm-4.5 deepseek-v3.2}"
dtypes="${DTYPES:-f32 bf16}"
mtp="${MTP:-$repo/src/Cli/bin/Release/net10.0/mtp.dll}"
[ -f "$mtp" ] || { echo "eager-step: $mtp not found; run 'dotnet build src/Cli -c Release' first" >&2; exit 2; }
chroot "$root" python3 -c 'import transformers' 2>/dev/null || { echo "eager-step: no transformers in $root" >&2; exit 2; }

work="$root/tmp/mtp-eager-step"
rm -rf "$work"
mkdir -p "$work/native" "$root/proc"
mounted=0
mountpoint -q "$root/proc" || { mount -t proc proc "$root/proc"; mounted=1; }
trap '[ $mounted = 1 ] && umount "$root/proc"; rm -rf "$work"' EXIT
cp "$here/eager_step.py" "$work/"
for f in $fixtures; do dotnet "$mtp" convert "$repo/fixtures/$f" "$work/native/$f" --to native --dtype f32 -q; done

out="$work/runs.jsonl"
echo "{\"loadavg_start\": \"$(cut -d' ' -f1-3 /proc/loadavg)\", \"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\", \"nproc\": $(nproc)}"
for r in $(seq 1 "$rounds"); do
  for f in $fixtures; do
    for d in $dtypes; do
      dotnet "$mtp" bench train "$work/native/$f" --dtype "$d" --threads 1 --batch 2 --seq-len 64 --steps 10 --json \
        | tr -d '\n' | sed "s/^/{\"side\": \"project\", \"fixture\": \"$f\", \"dtype\": \"$d\", \"round\": $r, \"run\": /; s/\$/}\n/" | tee -a "$out"
      OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 chroot "$root" python3 /tmp/mtp-eager-step/eager_step.py \
        "/tmp/mtp-eager-step/native/$f" --dtype "$d" --threads 1 --batch 2 --seq-len 64 --steps 10 --untimed 50 2>/dev/null \
        | grep '^{' | sed "s/^/{\"side\": \"eager\", \"fixture\": \"$f\", \"dtype\": \"$d\", \"round\": $r, \"run\": /; s/\$/}/" | tee -a "$out"
    done
  done
done
echo "{\"loadavg_end\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
chroot "$root" python3 - /tmp/mtp-eager-step/runs.jsonl <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def pick(r, key):
    return (r["run"]["results"][0] if r["side"] == "project" else r["run"])[key]
# Per fixture and dtype: the median over rounds of each run's median step, and the fastest step seen (less sensitive to
# other processes on a shared machine); ratio = project / eager.
for f, d in sorted({(r["fixture"], r["dtype"]) for r in rows}):
    runs = {s: [r for r in rows if (r["fixture"], r["dtype"], r["side"]) == (f, d, s)] for s in ("project", "eager")}
    med = {s: statistics.median(pick(r, "median_step_ms") for r in v) for s, v in runs.items()}
    best = {s: min(pick(r, "min_step_ms") for r in v) for s, v in runs.items()}
    print(json.dumps({"fixture": f, "dtype": d, "project_ms": med["project"], "eager_ms": med["eager"],
                      "ratio": round(med["project"] / med["eager"], 2), "project_min_ms": best["project"],
                      "eager_min_ms": best["eager"], "min_ratio": round(best["project"] / best["eager"], 2),
                      "rounds": len(runs["eager"])}))
PY
