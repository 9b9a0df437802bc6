// hikube-archs: compute_70 compute_75 compute_80 compute_90a
//
// Element-wise kernels: the smallest kernels that travel the whole PTX path (generation, manifest,
// embedding, per-device module registry, launch) and that the GPU tests check against the CPU.
//
// axpy_<t>(n, alpha, x, y): y[i] = alpha * x[i] + y[i], computed in f32, stored as <t>.
// Layout: contiguous vectors; no alignment beyond the element's. Grid-stride loop, so any grid
// size covers any n (the launcher caps the grid at a few waves of the device).
// Launched with programmatic dependent launch on sm_90+ (common/pdl.cuh): each kernel waits for
// the kernels before it on the stream before touching memory.
#include "common/convert.cuh"
#include "common/pdl.cuh"

template <typename T>
__device__ __forceinline__ void axpy(unsigned long long n, float alpha, const T* __restrict__ x,
                                     T* __restrict__ y) {
    hk::pdl_wait();
    hk::pdl_launch_dependents();
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        y[i] = hk::from_f32<T>(alpha * hk::to_f32(x[i]) + hk::to_f32(y[i]));
    }
}

extern "C" __global__ void axpy_f32(unsigned long long n, float alpha, const float* x, float* y) {
    axpy(n, alpha, x, y);
}

extern "C" __global__ void axpy_f16(unsigned long long n, float alpha, const __half* x, __half* y) {
    axpy(n, alpha, x, y);
}

extern "C" __global__ void axpy_bf16(unsigned long long n, float alpha, const __nv_bfloat16* x,
                                     __nv_bfloat16* y) {
    axpy(n, alpha, x, y);
}
