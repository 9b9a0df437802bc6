#!/usr/bin/env python3
"""PyTorch's convolution backward (cuDNN through autograd's kernel, aten.convolution_backward)
on the layers of `cargo bench --bench conv -- grad`: ResNet-50's layers at batch 64, NHWC
(channels_last), f16 and bf16, cudnn.benchmark on. dgrad and wgrad timed apart (output_mask),
CUDA events, median of 30 runs after warm-up, three rotating input sets. Prints one markdown row
per layer: TFLOP/s of each pass (2·N·P·Q·K·R·S·C per pass).

    python3 scripts/reference/torch_conv_backward.py [f16]
"""
import sys

import torch
from timing import median_ms

torch.backends.cudnn.benchmark = True

# (name, C, H=W, K, R=S, stride, padding): benches/conv.rs's LAYERS with C a multiple of 8, then
# its STRIDED.
LAYERS = [
    ("conv2 3x3 C64", 64, 56, 64, 3, 1, 1),
    ("conv2 1x1 C64->256", 64, 56, 256, 1, 1, 0),
    ("conv3 3x3 C128", 128, 28, 128, 3, 1, 1),
    ("conv4 3x3 C256", 256, 14, 256, 3, 1, 1),
    ("conv5 3x3 C512", 512, 7, 512, 3, 1, 1),
    ("conv3_1 3x3/2 C128", 128, 56, 128, 3, 2, 1),
    ("conv4_1 3x3/2 C256", 256, 28, 256, 3, 2, 1),
    ("conv5_1 3x3/2 C512", 512, 14, 512, 3, 2, 1),
    ("conv3 down 1x1/2 C256->512", 256, 56, 512, 1, 2, 0),
]
SETS = 3


def layer(dtype, name, c, hw, k, rs, stride, pad, n=64):
    cl = torch.channels_last
    xs = [torch.randn(n, c, hw, hw, device="cuda", dtype=dtype).to(memory_format=cl) for _ in range(SETS)]
    ws = [(0.1 * torch.randn(k, c, rs, rs, device="cuda", dtype=dtype)).to(memory_format=cl) for _ in range(SETS)]
    p = (hw + 2 * pad - rs) // stride + 1
    dys = [torch.randn(n, k, p, p, device="cuda", dtype=dtype).to(memory_format=cl) for _ in range(SETS)]
    flops = 2.0 * n * p * p * k * rs * rs * c

    def backward(mask):
        def run(i):
            torch.ops.aten.convolution_backward(
                dys[i % SETS], xs[i % SETS], ws[i % SETS], None, [stride] * 2, [pad] * 2, [1, 1],
                False, [0, 0], 1, mask)
        return run

    dgrad = flops / (median_ms(backward([True, False, False]), runs=30, warmup=5) * 1e9)
    wgrad = flops / (median_ms(backward([False, True, False]), runs=30, warmup=5) * 1e9)
    return dgrad, wgrad


def main():
    dtypes = [("f16", torch.float16)] + ([] if "f16" in sys.argv[1:] else [("bf16", torch.bfloat16)])
    print(f"{torch.cuda.get_device_name()}: PyTorch {torch.__version__}, cuDNN "
          f"{torch.backends.cudnn.version()}, convolution backward at batch 64, TFLOP/s")
    print("| dtype | layer | dgrad | wgrad |")
    print("|---|---|---|---|")
    for tag, dtype in dtypes:
        for spec in LAYERS:
            dgrad, wgrad = layer(dtype, *spec)
            print(f"| {tag} | {spec[0]} | {dgrad:.1f} | {wgrad:.1f} |")


if __name__ == "__main__":
    main()
