#!/usr/bin/env python3
"""cuDNN (through PyTorch) on the layers of examples/conv_sm90_bench.rs: NHWC (channels_last) f16,
cudnn.benchmark on, timed with CUDA events (median of 30 runs after warm-up, three rotating input
sets). Prints `CUDNN <layer> conv <TFLOP/s>` (conv2d with bias), `conv_relu` (conv2d with bias,
then ReLU) and `conv_nobias` (the bare convolution), and with --join FILE the ratio of each
`RESULT` line of the Rust bench in FILE to each of the three.

    python3 scripts/conv_cudnn_bench.py [--join rust_output.txt]
"""
import statistics
import sys

import torch
import torch.nn.functional as F

torch.backends.cudnn.benchmark = True


def layers():
    v = []
    for n in (64, 8, 1):
        for c, hw in ((64, 56), (128, 28), (256, 14), (512, 7)):
            v.append((f"3x3_c{c}_{hw}x{hw}_n{n}", n, hw, hw, c, c, 3, 1, 1))
        v.append((f"1x1_c64k256_56x56_n{n}", n, 56, 56, 64, 256, 1, 1, 0))
    v.append(("7x7s2_c8k64_224x224_n64", 64, 224, 224, 8, 64, 7, 2, 3))
    return v


def time_ms(fn, sets):
    for i in range(5):
        fn(i % sets)
    torch.cuda.synchronize()
    times = []
    for i in range(30):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn(i % sets)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main():
    dev = torch.device("cuda")
    print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name())
    results = {}
    for name, n, h, w, c, k, r, stride, pad in layers():
        xs = [torch.randn(n, c, h, w, device=dev, dtype=torch.half).to(memory_format=torch.channels_last) for _ in range(3)]
        ws = [torch.randn(k, c, r, r, device=dev, dtype=torch.half).to(memory_format=torch.channels_last) for _ in range(3)]
        b = torch.randn(k, device=dev, dtype=torch.half)
        p = (h + 2 * pad - r) // stride + 1
        q = (w + 2 * pad - r) // stride + 1
        flops = 2.0 * n * p * q * k * r * r * c
        with torch.no_grad():
            conv = time_ms(lambda i: F.conv2d(xs[i], ws[i], b, stride=stride, padding=pad), 3)
            conv_relu = time_ms(lambda i: torch.relu_(F.conv2d(xs[i], ws[i], b, stride=stride, padding=pad)), 3)
            bare = time_ms(lambda i: F.conv2d(xs[i], ws[i], None, stride=stride, padding=pad), 3)
        results[name] = (flops / conv / 1e9, flops / conv_relu / 1e9, flops / bare / 1e9)
        print(f"CUDNN {name} conv {results[name][0]:.1f} TFLOP/s ({conv * 1e3:.1f} us)")
        print(f"CUDNN {name} conv_relu {results[name][1]:.1f} TFLOP/s ({conv_relu * 1e3:.1f} us)")
        print(f"CUDNN {name} conv_nobias {results[name][2]:.1f} TFLOP/s ({bare * 1e3:.1f} us)")
    if "--join" in sys.argv:
        path = sys.argv[sys.argv.index("--join") + 1]
        print(f"{'layer':28} {'variant':18} {'ours':>7} {'cudnn+b+relu':>12} {'ratio':>6} {'cudnn+b':>7} {'ratio':>6} {'cudnn':>7} {'ratio':>6}")
        for line in open(path):
            f = line.split()
            if not f or f[0] != "RESULT" or f[1] not in results:
                continue
            ours = float(f[3])
            c, cr, bare = results[f[1]]
            print(f"{f[1]:28} {f[2]:18} {ours:7.1f} {cr:12.1f} {ours / cr:6.2f} {c:7.1f} {ours / c:6.2f} {bare:7.1f} {ours / bare:6.2f}")


if __name__ == "__main__":
    main()
