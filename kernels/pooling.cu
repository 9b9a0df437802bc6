// hikube-archs: compute_70 compute_75 compute_80 compute_90a
//
// Pooling over NHWC activations.
//
// global_avg_pool_nhwc_<t>(n, hw, c, x, y): y[b][ch] = mean over the hw pixels of x[b][p][ch],
// summed in f32, stored as <t>. One thread per (image, channel), channels fastest, so each step
// of the pixel loop reads one contiguous row of channels (coalesced). Grid-stride over n * c.
// Launched with programmatic dependent launch on sm_90+ (common/pdl.cuh).
#include "common/convert.cuh"
#include "common/pdl.cuh"

template <typename T>
__device__ __forceinline__ void global_avg_pool(unsigned long long n, unsigned long long hw,
                                                unsigned long long c, const T* __restrict__ x,
                                                T* __restrict__ y) {
    hk::pdl_wait();
    hk::pdl_launch_dependents();
    const unsigned long long total = n * c;
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    const float scale = 1.0f / static_cast<float>(hw);
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         i < total; i += stride) {
        const unsigned long long b = i / c, ch = i % c;
        const T* src = x + b * hw * c + ch;
        float sum = 0.0f;
        for (unsigned long long p = 0; p < hw; ++p) sum += hk::to_f32(src[p * c]);
        y[i] = hk::from_f32<T>(sum * scale);
    }
}

extern "C" __global__ void global_avg_pool_nhwc_f32(unsigned long long n, unsigned long long hw,
                                                    unsigned long long c, const float* x,
                                                    float* y) {
    global_avg_pool(n, hw, c, x, y);
}

extern "C" __global__ void global_avg_pool_nhwc_f16(unsigned long long n, unsigned long long hw,
                                                    unsigned long long c, const __half* x,
                                                    __half* y) {
    global_avg_pool(n, hw, c, x, y);
}

extern "C" __global__ void global_avg_pool_nhwc_bf16(unsigned long long n, unsigned long long hw,
                                                     unsigned long long c,
                                                     const __nv_bfloat16* x, __nv_bfloat16* y) {
    global_avg_pool(n, hw, c, x, y);
}
