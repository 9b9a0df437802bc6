"""Kernel launch latency through PyTorch on the same machine, the anchor for benches/runtime:
a chain of 1000 tiny kernels (in-place add on 256 floats), issued eagerly and replayed from a
CUDA graph. Microseconds per kernel, median of 10.

    python3 scripts/reference/torch_launch.py
"""
import time
import torch

CHAIN = 1000
x = torch.ones(256, device="cuda")
y = torch.zeros(256, device="cuda")


def chain():
    for _ in range(CHAIN):
        y.add_(x)


chain()
torch.cuda.synchronize()
eager = []
for _ in range(10):
    t = time.perf_counter()
    chain()
    torch.cuda.synchronize()
    eager.append((time.perf_counter() - t) * 1e6 / CHAIN)

s = torch.cuda.Stream()
s.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(s):
    chain()
torch.cuda.current_stream().wait_stream(s)
g = torch.cuda.CUDAGraph()
with torch.cuda.graph(g):
    chain()
g.replay()
torch.cuda.synchronize()
replay = []
for _ in range(10):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    g.replay()
    b.record()
    b.synchronize()
    replay.append(a.elapsed_time(b) * 1e3 / CHAIN)
eager.sort()
replay.sort()
print(f"torch {torch.__version__}: eager {eager[5]:.2f} us/kernel, graph replay {replay[5]:.2f} us/kernel")
