// hikube-archs: compute_70 compute_75 compute_80 compute_90a
//
// Direct convolution on CUDA cores, f32 accumulation: one thread per output element (n, p, q, k),
// output channels fastest so that neighbouring threads read neighbouring channels of NHWC.
// Serves depthwise convolutions (groups == C, C / groups == 1 input channel per filter) on every
// GPU, and every convolution on compute_70, where it is the simple, correct path (V100 tensor
// cores take the 1x1 convolutions through the GEMM). Any groups dividing C and K, any alignment.
// The epilogue (bias, ReLU, output type) is the GEMM's (gemm_params.cuh).
#include "conv/conv_shape.cuh"
#include "gemm/gemm_params.cuh"

namespace hk {

template <typename T>
__device__ __forceinline__ void conv_direct(const GemmParams& p, const ConvShape& cs) {
    const T* x = static_cast<const T*>(p.a);
    const T* w = static_cast<const T*>(p.b);
    const int cpg = cs.c / cs.groups, kpg = cs.k / cs.groups;
    const long long total = static_cast<long long>(p.m) * cs.k;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
        const int k = static_cast<int>(i % cs.k);
        const int m = static_cast<int>(i / cs.k);
        const int oq = m % cs.q;
        const int t = m / cs.q;
        const int op = t % cs.p;
        const int n = t / cs.p;
        const int c0 = (k / kpg) * cpg;
        float acc = 0.f;
        for (int r = 0; r < cs.r; ++r) {
            const int ih = op * cs.stride_h - cs.pad_h + r * cs.dil_h;
            if (static_cast<unsigned>(ih) >= static_cast<unsigned>(cs.h)) continue;
            for (int s = 0; s < cs.s; ++s) {
                const int iw = oq * cs.stride_w - cs.pad_w + s * cs.dil_w;
                if (static_cast<unsigned>(iw) >= static_cast<unsigned>(cs.w)) continue;
                const T* xp = x + ((static_cast<long long>(n) * cs.h + ih) * cs.w + iw) * cs.c + c0;
                const T* wp = w + ((static_cast<long long>(k) * cs.r + r) * cs.s + s) * cpg;
                for (int ci = 0; ci < cpg; ++ci) acc += to_f32(xp[ci]) * to_f32(wp[ci]);
            }
        }
        epilogue1(p, 0, m, k, acc);
    }
}

}  // namespace hk

extern "C" __global__ void conv_direct_f16(hk::GemmParams p, hk::ConvShape cs) {
    hk::conv_direct<__half>(p, cs);
}
extern "C" __global__ void conv_direct_bf16(hk::GemmParams p, hk::ConvShape cs) {
    hk::conv_direct<__nv_bfloat16>(p, cs);
}
