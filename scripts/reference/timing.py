"""The timer the PyTorch reference scripts share: `fn(i)` for i = 0, 1, ... run `warmup` times,
then `runs` times each between two CUDA events; the median in milliseconds."""
import statistics

import torch


def median_ms(fn, runs, warmup):
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(i)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)
