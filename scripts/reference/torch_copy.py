"""Copy bandwidth through PyTorch on the same machine, the anchor for benches/memory.rs.

    python3 scripts/reference/torch_copy.py [MiB]

Median of 20 timed copies with CUDA events, GB/s = 1e9 bytes/s; device copy counts bytes read
plus bytes written.
"""
import sys

import torch
from timing import median_ms

mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
n = mib << 20
dev = [torch.empty(n, dtype=torch.uint8, device="cuda").random_() for _ in range(2)]
pinned = torch.empty(n, dtype=torch.uint8).pin_memory().random_()
pageable = torch.empty(n, dtype=torch.uint8).random_()


cases = {
    "h2d_pinned": (lambda i: dev[i % 2].copy_(pinned, non_blocking=True), n),
    "h2d_pageable": (lambda i: dev[i % 2].copy_(pageable), n),
    "d2h_pinned": (lambda i: pinned.copy_(dev[i % 2], non_blocking=True), n),
    "d2h_pageable": (lambda i: pageable.copy_(dev[i % 2]), n),
    "d2d": (lambda i: dev[i % 2].copy_(dev[1 - i % 2]), 2 * n),
}
print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}: {mib} MiB")
print("| copy | size | GB/s |\n|---|---|---|")
for name, (fn, nbytes) in cases.items():
    print(f"| {name} | {mib}MiB | {nbytes / (median_ms(fn, runs=20, warmup=3) * 1e6):.1f} |")
