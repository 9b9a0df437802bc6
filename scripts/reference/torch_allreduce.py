"""torch.distributed all-reduce bandwidth on the same machine, the anchor for benches/multi.rs.

    python3 scripts/reference/torch_allreduce.py [--quick]

One process per visible GPU (torch.multiprocessing, NCCL backend, world size = GPU count),
f32 sum in place from 1 MiB to 1 GiB, as the bench measures. Per size: 3 warm-up calls, then
the median over repetitions of (CUDA-event time of `iters` back-to-back calls) / iters, the
slowest rank's. algbw = bytes / time; busbw = algbw * 2(n-1)/n (nccl-tests' figure; undefined
for one rank, where only algbw is printed).
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

MIB = 1 << 20


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def worker(rank, world, quick):
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world, device_id=torch.device("cuda", rank))
    sizes = [MIB, 16 * MIB, 256 * MIB, 1024 * MIB] if quick else [MIB << p for p in range(11)]
    if rank == 0:
        print(f"torch {torch.__version__}, NCCL {torch.cuda.nccl.version()}, {world} rank(s), "
              f"{torch.cuda.get_device_name(0)}")
        if world == 1:
            print("(one rank: busbw = algbw*2(n-1)/n is undefined; algbw only)")
        print("| size | time (us) | algbw (GB/s) | busbw (GB/s) |\n|---|---|---|---|")
    for nbytes in sizes:
        x = torch.zeros(nbytes // 4, dtype=torch.float32, device="cuda")
        iters = 5 if nbytes >= 256 * MIB else 20
        reps = 5 if quick else 10
        for _ in range(3):
            dist.all_reduce(x)
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(iters):
                dist.all_reduce(x)
            e.record()
            e.synchronize()
            t = torch.tensor([s.elapsed_time(e) / 1e3 / iters], device="cuda")
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            times.append(t.item())
        t = median(times)
        algbw = nbytes / t / 1e9
        busbw = f"{algbw * 2 * (world - 1) / world:.1f}" if world > 1 else "undefined (n = 1)"
        if rank == 0:
            print(f"| {nbytes // MIB} MiB | {t * 1e6:.1f} | {algbw:.1f} | {busbw} |")
        del x
    dist.destroy_process_group()


if __name__ == "__main__":
    world = torch.cuda.device_count()
    quick = "--quick" in sys.argv
    mp.spawn(worker, args=(world, quick), nprocs=world, join=True)
