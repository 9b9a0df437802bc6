// Probe: the H100's ceiling for the mma.sync GEMM paths. Issues mma.sync m16n8k16 (f16 in, f32
// accumulate; the compute_80 path) and m16n8k32 (e4m3 in, f32 accumulate; the compute_89 FP8
// path) from registers only, no memory traffic, with 8 independent accumulators per warp, and
// reports TFLOP/s for several warps per SM. Hopper has no FP8 mma.sync (its FP8 tensor cores
// are wgmma's): ptxas turns each m16n8k32 e4m3 into 2 HMMA.16816.F32, F2FP unpacks and 4 FADDs,
// so its figure is bounded by the f16 one; on sm_89 it is one QMMA.16832. Build and run on the
// GPU machine:
//   nvcc -O3 -gencode=arch=compute_89,code=sm_90 scripts/probes/mma_peak.cu -o /tmp/mma_peak && /tmp/mma_peak
#include <cstdio>
#include <cuda_runtime.h>

template <bool FP8>
__global__ void mma_loop(float* out, int iters) {
    unsigned a[4] = {0x3c003c00u ^ threadIdx.x, 0x3c003c00u, 0x3c003c00u, 0x3c003c00u};
    unsigned b[2] = {0x3c003c00u, 0x3c003c00u ^ blockIdx.x};
    float acc[8][4] = {};
    for (int i = 0; i < iters; ++i) {
        // Operands that change every iteration and differ between the 8 products: on sm_90,
        // which has no FP8 mma.sync, ptxas emulates m16n8k32 e4m3 as two f16 HMMAs into a
        // zeroed temporary plus FADDs into the accumulator (the SASS of gemm_fp8_sm89 shows it),
        // and with the same operands everywhere it computed the product once, out of the loop,
        // and the probe timed the FADDs alone.
#pragma unroll
        for (int r = 0; r < 4; ++r) a[r] += 0x00010001u;
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const unsigned b0 = b[0] ^ (unsigned(j) << 9), b1 = b[1] ^ (unsigned(j) << 9);
            if (FP8)
                asm volatile(
                    "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, "
                    "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                    : "+f"(acc[j][0]), "+f"(acc[j][1]), "+f"(acc[j][2]), "+f"(acc[j][3])
                    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
            else
                asm volatile(
                    "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                    "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                    : "+f"(acc[j][0]), "+f"(acc[j][1]), "+f"(acc[j][2]), "+f"(acc[j][3])
                    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
        }
    }
    float s = 0.f;
    for (int j = 0; j < 8; ++j) s += acc[j][0] + acc[j][1] + acc[j][2] + acc[j][3];
    if (s == 12345.f) out[0] = s;
}

int main() {
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    float* out;
    cudaMalloc(&out, 4);
    const int iters = 4096;
    for (bool fp8 : {false, true}) {
        auto kernel = fp8 ? mma_loop<true> : mma_loop<false>;
        const int k = fp8 ? 32 : 16;
        for (int warps : {4, 8, 16, 32}) {
            dim3 grid(sms), block(32 * warps);
            kernel<<<grid, block>>>(out, 16);
            cudaEvent_t e0, e1;
            cudaEventCreate(&e0);
            cudaEventCreate(&e1);
            cudaEventRecord(e0);
            kernel<<<grid, block>>>(out, iters);
            cudaEventRecord(e1);
            cudaEventSynchronize(e1);
            float ms = 0;
            cudaEventElapsedTime(&ms, e0, e1);
            double flops = 2.0 * 16 * 8 * k * 8.0 * iters * warps * sms;
            printf("mma.sync m16n8k%d %s->f32, %2d warps/SM: %.1f TFLOP/s (%s)\n", k,
                   fp8 ? "e4m3" : "f16", warps, flops / (ms * 1e9),
                   cudaGetErrorString(cudaGetLastError()));
        }
    }
    return 0;
}
