// hikube-archs: compute_70 compute_75 compute_80 compute_90a
//
// Direct convolution on CUDA cores, f32 accumulation: one thread per output element (n, p, q, k),
// output channels fastest so that neighbouring threads read neighbouring channels of NHWC.
// Serves depthwise convolutions (groups == C, C / groups == 1 input channel per filter) on every
// GPU, and every convolution on compute_70, where it is the simple, correct path (V100 tensor
// cores take the 1x1 convolutions through the GEMM). Any groups dividing C and K, any alignment.
// The epilogue (bias, ReLU, output type) is the GEMM's (gemm_params.cuh).
// The backward kernels (conv_dgrad_direct_*, conv_wgrad_direct_*) are the simple, correct path
// of the gradients where the tensor-core ones (conv_grad_sm80.cu) do not run: compute_70 and
// compute_75, grouped convolutions, channel counts that are not multiples of 8. They take the
// tensor-core kernels' parameters (the data gradient's phase unused: one launch covers dx).
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

// The data gradient, dx = dy · wᵀ: one thread per input element (n, h, w, c), summing over the
// taps (r, s) that carry x[n, h, w] to an output pixel and the filters k of c's group. p.m =
// N·H·W, p.n = C, p.a = dy, p.b = w.
template <typename T>
__device__ __forceinline__ void conv_dgrad_direct(const GemmParams& p, const ConvShape& cs) {
    const T* dy = static_cast<const T*>(p.a);
    const T* w = static_cast<const T*>(p.b);
    const int cpg = cs.c / cs.groups, kpg = cs.k / cs.groups;
    const long long filter = static_cast<long long>(cs.r) * cs.s * cpg;  // one filter's elements
    const long long total = static_cast<long long>(p.m) * cs.c;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
        const int c = static_cast<int>(i % cs.c);
        const int m = static_cast<int>(i / cs.c);
        const int iw = m % cs.w;
        const int t = m / cs.w;
        const int ih = t % cs.h;
        const int n = t / cs.h;
        const int g = c / cpg, ci = c - g * cpg;
        float acc = 0.f;
        for (int r = 0; r < cs.r; ++r) {
            const int th = ih + cs.pad_h - r * cs.dil_h;
            if (th < 0 || th % cs.stride_h != 0 || th / cs.stride_h >= cs.p) continue;
            for (int s = 0; s < cs.s; ++s) {
                const int tw = iw + cs.pad_w - s * cs.dil_w;
                if (tw < 0 || tw % cs.stride_w != 0 || tw / cs.stride_w >= cs.q) continue;
                const long long pix =
                    (static_cast<long long>(n) * cs.p + th / cs.stride_h) * cs.q + tw / cs.stride_w;
                const T* dyp = dy + pix * cs.k + g * kpg;
                const T* wp = w + (g * kpg) * filter + (r * cs.s + s) * cpg + ci;
                for (int k = 0; k < kpg; ++k) acc += to_f32(dyp[k]) * to_f32(wp[k * filter]);
            }
        }
        epilogue1(p, 0, m, c, acc);
    }
}

// The filter gradient, dw = dyᵀ · im2col(x): a block per filter element (k, r, s, c') (grid-
// stride), its threads striding over the N·P·Q output pixels, their sums added through warp
// shuffles and shared memory (blocks of a multiple of 32 threads, at most 1024: the host checks).
// p.m = K, p.n = R·S·C/groups, p.a = dy, p.b = x.
template <typename T>
__device__ __forceinline__ void conv_wgrad_direct(const GemmParams& p, const ConvShape& cs) {
    __shared__ float warp_sums[32];
    const T* dy = static_cast<const T*>(p.a);
    const T* x = static_cast<const T*>(p.b);
    const int cpg = cs.c / cs.groups, kpg = cs.k / cs.groups;
    const int pq = cs.p * cs.q;
    const long long pixels = static_cast<long long>(cs.n) * pq;
    const long long total = static_cast<long long>(p.m) * p.n;
    for (long long o = blockIdx.x; o < total; o += gridDim.x) {
        const int col = static_cast<int>(o % p.n);
        const int k = static_cast<int>(o / p.n);
        const int ci = col % cpg, tap = col / cpg;
        const int s = tap % cs.s, r = tap / cs.s;
        const int c = (k / kpg) * cpg + ci;
        float acc = 0.f;
        for (long long i = threadIdx.x; i < pixels; i += blockDim.x) {
            const int n = static_cast<int>(i / pq), rem = static_cast<int>(i % pq);
            const int op = rem / cs.q, oq = rem % cs.q;
            const int ih = op * cs.stride_h - cs.pad_h + r * cs.dil_h;
            const int iw = oq * cs.stride_w - cs.pad_w + s * cs.dil_w;
            if (static_cast<unsigned>(ih) >= static_cast<unsigned>(cs.h) ||
                static_cast<unsigned>(iw) >= static_cast<unsigned>(cs.w))
                continue;
            const long long in = (static_cast<long long>(n) * cs.h + ih) * cs.w + iw;
            acc += to_f32(dy[i * cs.k + k]) * to_f32(x[in * cs.c + c]);
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
        if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = acc;
        __syncthreads();
        if (threadIdx.x < 32) {
            float v = threadIdx.x < (blockDim.x >> 5) ? warp_sums[threadIdx.x] : 0.f;
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
            if (threadIdx.x == 0) epilogue1(p, 0, k, col, v);
        }
        __syncthreads();
    }
}

}  // namespace hk

extern "C" __global__ void conv_direct_f16(hk::GemmParams p, hk::ConvShape cs) {
    hk::conv_direct<__half>(p, cs);
}
extern "C" __global__ void conv_direct_bf16(hk::GemmParams p, hk::ConvShape cs) {
    hk::conv_direct<__nv_bfloat16>(p, cs);
}
extern "C" __global__ void conv_dgrad_direct_f16(hk::GemmParams p, hk::ConvShape cs, hk::DgradPhases) {
    hk::conv_dgrad_direct<__half>(p, cs);
}
extern "C" __global__ void conv_dgrad_direct_bf16(hk::GemmParams p, hk::ConvShape cs, hk::DgradPhases) {
    hk::conv_dgrad_direct<__nv_bfloat16>(p, cs);
}
extern "C" __global__ void conv_wgrad_direct_f16(hk::GemmParams p, hk::ConvShape cs, hk::DgradPhases) {
    hk::conv_wgrad_direct<__half>(p, cs);
}
extern "C" __global__ void conv_wgrad_direct_bf16(hk::GemmParams p, hk::ConvShape cs, hk::DgradPhases) {
    hk::conv_wgrad_direct<__nv_bfloat16>(p, cs);
}
