#!/usr/bin/env python3
"""torch._scaled_mm (cuBLASLt FP8) on the shapes of `cargo bench --bench gemm -- fp8`: e4m3 A
(row-major) and B (column-major), per-tensor scales 0.5 and 2 as device scalars, f16 out, with
cuBLASLt's default accumulation and with use_fast_accum; the
median of 15 CUDA-event-timed runs after 3, over three rotating input sets. Run it in the same
call as the Rust bench: the two tables are compared as ours / torch. With `errors`, the
relative error of cuBLASLt's f32 output against the f64 product of the same e4m3 codes as K
grows (M×N = 128×256, as `fp8::error_against_k` measures ours), both accumulations.

    python3 scripts/reference/torch_scaled_mm.py [errors]
"""
import sys
import statistics

import torch

SHAPES = [(2048, 2048, 2048), (4096, 4096, 4096), (8192, 8192, 8192), (16384, 4096, 4096),
          (128, 4096, 4096)]
SETS = 3


def codes(rows, cols):
    return (torch.rand(rows, cols, device="cuda") * 8 - 4).to(torch.float8_e4m3fn)


def main():
    dev = torch.cuda.get_device_name()
    print(f"\n{dev}, torch {torch.__version__}: torch._scaled_mm e4m3 NT, f16 out, TFLOP/s "
          "(median of 15, 3 rotating input sets)")
    print("| M×N×K | torch._scaled_mm | use_fast_accum=True |")
    print("|---|---|---|")
    sa = torch.tensor(0.5, device="cuda")
    sb = torch.tensor(2.0, device="cuda")
    for m, n, k in SHAPES:
        a = [codes(m, k) for _ in range(SETS)]
        b = [codes(n, k).t() for _ in range(SETS)]  # K x N, column-major
        row = []
        for fast in (False, True):
            times = []
            for i in range(18):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                torch._scaled_mm(a[i % SETS], b[i % SETS], scale_a=sa, scale_b=sb,
                                 out_dtype=torch.float16, use_fast_accum=fast)
                end.record()
                end.synchronize()
                if i >= 3:
                    times.append(start.elapsed_time(end))
            row.append(2 * m * n * k / (statistics.median(times) * 1e9))
        print(f"| {m}×{n}×{k} | {row[0]:.1f} | {row[1]:.1f} |")

def errors():
    print(f"\n{torch.cuda.get_device_name()}: torch._scaled_mm e4m3 f32 out, "
          "‖out − ref‖/‖ref‖ against the f64 product of the codes")
    print("| K | torch._scaled_mm | use_fast_accum=True |")
    print("|---|---|---|")
    one = torch.tensor(1.0, device="cuda")
    torch.manual_seed(5)
    for k in (256, 1024, 4096, 16384):
        a, b = codes(128, k), codes(256, k).t()
        ref = a.double() @ b.double()
        row = []
        for fast in (False, True):
            out = torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.float32,
                                   use_fast_accum=fast)
            row.append(((out.double() - ref).norm() / ref.norm()).item())
        print(f"| {k} | {row[0]:.2e} | {row[1]:.2e} |")


if __name__ == "__main__":
    errors() if sys.argv[1:] == ["errors"] else main()
