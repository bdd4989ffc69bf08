"""Per-layer kernel floor of a decode step, from microsoft/vidur's measured vLLM kernel times.

A decode step streams every weight once, so the roofline gives it ``weights / bandwidth``. But
each of the ~10 kernels a transformer layer launches also takes a few microseconds that do not
depend on its bytes: ramp-up and tail of the grid, plus the elementwise kernels (RMSNorm,
rotary embedding, activation, residual add) that read almost nothing. With 24-80 layers that
is 1-4 ms per step, as much as the whole weight read of a 1.5B model.

vidur profiled vLLM's kernels one by one on A100, H100 and A40 for eight models
(``data/profiling/compute/<gpu>/<org>/<model>/mlp.csv``). For each GPU this script takes the
rows with one token and no tensor parallelism (a decode step of one sequence) and:

* fits ``time = intercept + bytes / bandwidth`` over the four GEMMs of every model (QKV, O,
  up or gate_up, down), weighting each by 1/time so the small GEMMs count as much as the big;
* takes the median over models of one layer's elementwise kernels: two RMSNorms, rotary
  embedding, activation and residual add;
* reports the floor per layer: four GEMM intercepts plus the elementwise kernels.

These floors go into ``coderig/plan/catalog/gpus.toml`` (``layer_floor_us``), their median
into ``engine.toml`` (``unmeasured_layer_floor_us``) for the GPUs vidur did not profile.

Usage: python benchmarks/kernel_floor.py VIDUR_CHECKOUT
(``git clone https://github.com/microsoft/vidur``; the mlp.csv files are plain CSV.)
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import numpy as np

#: Datasheet memory bandwidth of the GPUs vidur profiled (GB/s): A100 SXM 80GB, H100 SXM, A40.
PEAK_GBPS = {"a100": 2039.0, "h100": 3350.0, "a40": 696.0}
GEMMS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
#: One layer's elementwise kernels and how many times a layer launches each.
ELEMENTWISE = {"input_layernorm": 2, "attn_rope": 1, "mlp_act": 1, "add": 1}


def gemm_bytes(row: dict[str, str]) -> dict[str, float]:
    """bf16 weight bytes each GEMM of one layer streams."""
    h, f = int(row["n_embd"]), int(row["n_expanded_embd"])
    heads, kv_heads = int(row["n_head"]), int(row["n_kv_head"])
    head_dim = h // heads
    up = 2 if row["use_gated_mlp"] == "True" else 1
    params = {
        "attn_pre_proj": h * (heads + 2 * kv_heads) * head_dim,
        "attn_post_proj": h * h,
        "mlp_up_proj": h * f * up,
        "mlp_down_proj": f * h,
    }
    return {op: 2.0 * n for op, n in params.items()}


def decode_rows(gpu_dir: Path) -> list[tuple[str, dict[str, str]]]:
    """(model, row) for each model's one-token, TP1 profile on this GPU."""
    out = []
    for path in sorted(gpu_dir.glob("*/*/mlp.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                if row["num_tokens"] == "1" and row["num_tensor_parallel_workers"] == "1":
                    out.append((path.parent.name, row))
                    break
    return out


def median_us(row: dict[str, str], op: str) -> float:
    return float(row[f"time_stats.{op}.median"]) * 1000.0


def floor_for(rows: list[tuple[str, dict[str, str]]]) -> dict[str, float]:
    sizes, times = [], []
    for _, row in rows:
        for op, size in gemm_bytes(row).items():
            sizes.append(size)
            times.append(median_us(row, op))
    x = np.array([[1.0, s / 1e6] for s in sizes])
    y = np.array(times)
    weight = 1.0 / y
    intercept, us_per_mb = np.linalg.lstsq(x * weight[:, None], y * weight, rcond=None)[0]
    elementwise = statistics.median(
        sum(n * median_us(row, op) for op, n in ELEMENTWISE.items()) for _, row in rows
    )
    residual = (x @ [intercept, us_per_mb] - y) / y
    return {
        "models": len(rows),
        "gemm_intercept_us": float(intercept),
        "gemm_gbps": 1000.0 / float(us_per_mb),
        "max_fit_error_pct": 100.0 * float(np.max(np.abs(residual))),
        "elementwise_us": elementwise,
        "layer_floor_us": 4 * float(intercept) + elementwise,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("vidur", type=Path, help="a checkout of github.com/microsoft/vidur")
    args = parser.parse_args()
    compute = args.vidur / "data" / "profiling" / "compute"
    print("| GPU | models | GEMM GB/s (of peak) | GEMM intercept | elementwise | floor/layer |")
    print("|---|---|---|---|---|---|")
    floors = []
    for gpu, peak in PEAK_GBPS.items():
        rows = decode_rows(compute / gpu)
        if not rows:
            continue
        r = floor_for(rows)
        floors.append(r["layer_floor_us"])
        print(
            f"| {gpu} | {r['models']} | {r['gemm_gbps']:.0f} ({r['gemm_gbps'] / peak:.0%}) "
            f"| {r['gemm_intercept_us']:.1f} us (fit within {r['max_fit_error_pct']:.0f} %) "
            f"| {r['elementwise_us']:.1f} us | **{r['layer_floor_us']:.1f} us** |"
        )
    if floors:
        print(
            f"\nmedian floor per layer over {len(floors)} GPUs: {statistics.median(floors):.1f} us"
        )


if __name__ == "__main__":
    main()
