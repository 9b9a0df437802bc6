#!/usr/bin/env python3
"""The training step of examples/cnn_train.rs in PyTorch, for its speed: the same CNN (8x8x1 ->
conv 3x3x16 + ReLU -> conv 3x3x32 stride 2 + ReLU -> linear 512x10), batch 64, channels_last,
AMP f16 (autocast) with a static loss scale of 1024, SGD with momentum, cudnn.benchmark on,
the whole step (forward, backward, update) captured as one CUDA graph. Prints the replayed
step's time (CUDA events, mean of 200 replays after warm-up) and images/s.

    python3 scripts/reference/torch_cnn_train.py
"""
import torch
import torch.nn as nn

torch.backends.cudnn.benchmark = True
BATCH, REPLAYS, SCALE = 64, 200, 1024.0


def main():
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(512, 10),
    ).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(BATCH, 1, 8, 8, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,), device="cuda")

    def step():
        opt.zero_grad(set_to_none=False)
        with torch.autocast("cuda", dtype=torch.float16):
            loss = loss_fn(model(x), y)
        (loss * SCALE).backward()
        for p in model.parameters():
            p.grad.div_(SCALE)
        opt.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(5):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    for _ in range(10):
        graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(REPLAYS):
        graph.replay()
    end.record()
    end.synchronize()
    ms = start.elapsed_time(end) / REPLAYS
    print(f"{torch.cuda.get_device_name()}: PyTorch {torch.__version__}, cuDNN "
          f"{torch.backends.cudnn.version()}: one training step (graph replay, batch {BATCH}): "
          f"{ms * 1e3:.1f} us, {BATCH / (ms * 1e-3):.0f} images/s")


if __name__ == "__main__":
    main()
