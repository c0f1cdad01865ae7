#!/usr/bin/env python3
"""Print the kernel benchmark as a markdown table (stdlib only).

Reads criterion's output, <target>/criterion/<group>/<function>/new/
{estimates.json,benchmark.json}, written by

    cargo bench -p quarry-benches --bench kernels

and prints, for every group (kernel_dim[_pair]) and function (quarry-<path>,
simsimd): ns per distance (median and mean of criterion's estimates, divided by
the throughput elements per iteration) and the ratio to simsimd in the same
group (< 1 means Quarry is faster). The target dir is, in order: the first
argument, $CARGO_TARGET_DIR, ./target.
"""

import json
import os
import sys
from pathlib import Path


def criterion_dir() -> Path:
    if len(sys.argv) > 1:
        base = Path(sys.argv[1])
    elif os.environ.get("CARGO_TARGET_DIR"):
        base = Path(os.environ["CARGO_TARGET_DIR"])
    else:
        base = Path("target")
    return base if base.name == "criterion" else base / "criterion"


def elements(bench: dict) -> int:
    tp = bench.get("throughput") or {}
    for key in ("Elements", "ElementsAndBytes"):
        v = tp.get(key)
        if isinstance(v, int):
            return v
        if isinstance(v, dict) and "elements" in v:
            return int(v["elements"])
    return 1


def main() -> int:
    root = criterion_dir()
    rows = {}
    for est_path in sorted(root.glob("*/*/new/estimates.json")):
        fdir = est_path.parent
        bench_path = fdir / "benchmark.json"
        if not bench_path.exists():
            continue
        bench = json.loads(bench_path.read_text())
        est = json.loads(est_path.read_text())
        group = bench.get("group_id") or est_path.parents[2].name
        func = bench.get("function_id") or est_path.parents[1].name
        n = elements(bench)
        rows.setdefault(group, {})[func] = (
            est["median"]["point_estimate"] / n,
            est["mean"]["point_estimate"] / n,
        )
    if not rows:
        print(f"no criterion results under {root}", file=sys.stderr)
        return 1

    def group_key(g: str):
        parts = g.split("_")
        pair = parts[-1] == "pair"
        if pair:
            parts = parts[:-1]
        dim = int(parts[-1]) if parts[-1].isdigit() else 0
        kernel = "_".join(parts[:-1])
        order = ["l2_f32", "dot_f32", "l2_f16", "dot_f16", "l2_i8", "dot_i8"]
        k = order.index(kernel) if kernel in order else len(order)
        return (pair, -dim, k, g)

    def func_key(f: str):
        order = ["quarry-avx512", "quarry-avx2", "quarry-neon", "quarry-scalar", "simsimd"]
        return (order.index(f) if f in order else len(order), f)

    print(f"Criterion results from `{root}` (ns per distance; ratio = Quarry / simsimd, median).")
    print()
    print("| kernel | path | ns/distance (median) | ns/distance (mean) | ratio vs simsimd |")
    print("| --- | --- | ---: | ---: | ---: |")
    for group in sorted(rows, key=group_key):
        funcs = rows[group]
        ref = funcs.get("simsimd")
        for func in sorted(funcs, key=func_key):
            med, mean = funcs[func]
            ratio = f"{med / ref[0]:.2f}" if ref and func != "simsimd" else "—"
            print(f"| {group} | {func} | {med:.2f} | {mean:.2f} | {ratio} |")
    print()
    print(
        "f16: Quarry = f32 query × f16 rows, simsimd = f16 × f16. "
        "i8: Quarry = f32 query × i8 rows with a scale, simsimd = i8 × i8 (integer; reference only). "
        "`_pair` = one hot pair; otherwise a 4096-row pool is streamed."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
