// The parameters every GEMM kernel takes, and the fused epilogue they share.
//
// D[b] = act(alpha * op(A[b]) * op(B[b]) + beta * C[b] + bias)  for b in 0..batch
//   A: M x K, row-major (K contiguous, lda >= K) or column-major (M contiguous, lda >= M)
//   B: K x N, row-major (N contiguous, ldb >= N) or column-major (K contiguous, ldb >= K)
//   C, D: M x N row-major (ldc, ldd >= N), stored as out_dtype; bias: N elements of bias_dtype
//   act: none, ReLU, or GELU (erf form, as PyTorch's nn.GELU()); or ACT_RELU_MASK, the ReLU's
//   backward: the value where C (the ReLU's forward output, read whatever beta, which is then 0)
//   is positive, else 0.
// beta == 0 never reads C but as the mask. With split-K, each split writes its f32 partial sums to the workspace
// and gemm_splitk_reduce applies the epilogue.
//
// The layout of this struct is mirrored by `GemmParams` in src/launch/gemm.rs.
#pragma once
#include "common/convert.cuh"

namespace hk {

// Whether an input type is bf16 (the tensor-core instructions name their operand types).
template <typename T>
struct IsBf16 {
    static constexpr bool value = false;
};
template <>
struct IsBf16<__nv_bfloat16> {
    static constexpr bool value = true;
};

// The FP8 encodings, as the kernels' input types (one byte each; the tensor cores read the
// bits): Fp8Kind<T>::value is 1 for e4m3, 2 for e5m2, 0 for the other types.
struct Fp8E4M3 {
    unsigned char bits;
};
struct Fp8E5M2 {
    unsigned char bits;
};
template <typename T>
struct Fp8Kind {
    static constexpr int value = 0;
};
template <>
struct Fp8Kind<Fp8E4M3> {
    static constexpr int value = 1;
};
template <>
struct Fp8Kind<Fp8E5M2> {
    static constexpr int value = 2;
};
// Two FP8 values of encoding F, as one 16-bit element: the mma.sync kernels' loaders and
// ldmatrix move 16-bit elements, and an m16n8k32 FP8 fragment holds the same bytes as an
// m16n8k16 16-bit one.
template <class F>
struct Fp8Pair {
    unsigned short bits;
};
template <class F>
struct Fp8Kind<Fp8Pair<F>> {
    static constexpr int value = Fp8Kind<F>::value;
};

// The FP8 kernels' scales (launch::gemm::Fp8Scales): D = scale_a * scale_b * (A * B) before the
// epilogue; amax, unless null, gets the largest magnitude stored (as f32 bits, by atomicMax:
// the host zeroes it before the launch).
struct Fp8Scales {
    const float* scale_a;
    const float* scale_b;
    float* amax;
};

// Adds this thread's largest magnitude to *amax (unless null): a warp's maximum, then one
// atomicMax of its bits per warp (non-negative floats order as their bits do). Whole warps.
__device__ __forceinline__ void publish_amax(float* amax, float mine) {
    if (!amax) return;
#pragma unroll
    for (int o = 16; o > 0; o /= 2) mine = fmaxf(mine, __shfl_xor_sync(0xffffffffu, mine, o));
    if ((threadIdx.x & 31) == 0) atomicMax(reinterpret_cast<int*>(amax), __float_as_int(mine));
}

// What an epilogue does with each value it stores, after the activation: nothing, or (AbsMax)
// keeps the largest magnitude, NaNs left out.
struct NoTrack {
    __device__ __forceinline__ void operator()(float) const {}
};
struct AbsMax {
    float* max;
    __device__ __forceinline__ void operator()(float v) const { *max = fmaxf(*max, fabsf(v)); }
};

enum OutDtype : int { OUT_F32 = 0, OUT_F16 = 1, OUT_BF16 = 2 };
enum Activation : int { ACT_NONE = 0, ACT_RELU = 1, ACT_GELU = 2, ACT_RELU_MASK = 3 };

struct GemmParams {
    const void* a;
    const void* b;
    const void* c;      // may equal d (in-place); unused when beta == 0
    const void* bias;   // null: no bias
    void* d;
    float* workspace;   // split-K partial sums: splits * batch * M * N floats
    long long lda, ldb, ldc, ldd;
    long long stride_a, stride_b, stride_c, stride_d;  // elements between batches
    int m, n, k;
    int batch;
    int splits;         // 1: no split-K
    int k_per_split;    // a multiple of the kernel's BK
    int activation;
    int out_dtype;
    int pair_ok;        // 1: D, C and the bias allow two-element vector access at even columns
    int reserved;       // 1: they allow 16-byte access at columns that are multiples of 8
    int bias_dtype;     // an OutDtype: the bias may have another type than D
    float alpha, beta;
};

__device__ __forceinline__ float load_out(const void* p, int dtype, long long i) {
    switch (dtype) {
        case OUT_F16: return to_f32(static_cast<const __half*>(p)[i]);
        case OUT_BF16: return to_f32(static_cast<const __nv_bfloat16*>(p)[i]);
        default: return static_cast<const float*>(p)[i];
    }
}

__device__ __forceinline__ void store_out(void* p, int dtype, long long i, float v) {
    switch (dtype) {
        case OUT_F16: static_cast<__half*>(p)[i] = __float2half_rn(v); break;
        case OUT_BF16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v); break;
        default: static_cast<float*>(p)[i] = v;
    }
}

__device__ __forceinline__ float2 load_out2(const void* p, int dtype, long long i) {
    switch (dtype) {
        case OUT_F16: return __half22float2(*reinterpret_cast<const __half2*>(static_cast<const __half*>(p) + i));
        case OUT_BF16: {
            __nv_bfloat162 v = *reinterpret_cast<const __nv_bfloat162*>(static_cast<const __nv_bfloat16*>(p) + i);
            return make_float2(__bfloat162float(v.x), __bfloat162float(v.y));
        }
        default: return *reinterpret_cast<const float2*>(static_cast<const float*>(p) + i);
    }
}

__device__ __forceinline__ void store_out2(void* p, int dtype, long long i, float x, float y) {
    switch (dtype) {
        case OUT_F16:
            *reinterpret_cast<__half2*>(static_cast<__half*>(p) + i) = __floats2half2_rn(x, y);
            break;
        case OUT_BF16: {
            __nv_bfloat162 v;
            v.x = __float2bfloat16_rn(x);
            v.y = __float2bfloat16_rn(y);
            *reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(p) + i) = v;
            break;
        }
        default: *reinterpret_cast<float2*>(static_cast<float*>(p) + i) = make_float2(x, y);
    }
}

__device__ __forceinline__ float activate(int act, float v) {
    if (act == ACT_RELU) return fmaxf(v, 0.f);
    if (act == ACT_GELU) return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
    return v;
}

// Applies the epilogue to acc at (row r, column c) of batch b and stores it (track sees the value).
template <class Track = NoTrack>
__device__ __forceinline__ void epilogue1(const GemmParams& p, int b, int r, int c, float acc,
                                          Track track = {}) {
    float v = p.alpha * acc;
    if (p.beta != 0.f) v += p.beta * load_out(p.c, p.out_dtype, b * p.stride_c + r * p.ldc + c);
    if (p.bias) v += load_out(p.bias, p.bias_dtype, c);
    const long long i = b * p.stride_d + r * p.ldd + c;
    if (p.activation == ACT_RELU_MASK) {
        const bool on = load_out(p.c, p.out_dtype, b * p.stride_c + r * p.ldc + c) > 0.f;
        track(on ? v : 0.f);
        store_out(p.d, p.out_dtype, i, on ? v : 0.f);
        return;
    }
    v = activate(p.activation, v);
    track(v);
    store_out(p.d, p.out_dtype, i, v);
}

// The same for columns c and c + 1 (c even); falls back to single elements at the edge or when
// the rows do not allow paired access.
template <class Track = NoTrack>
__device__ __forceinline__ void epilogue2(const GemmParams& p, int b, int r, int c, float x, float y,
                                          Track track = {}) {
    if (!p.pair_ok || c + 1 >= p.n || p.activation == ACT_RELU_MASK) {
        epilogue1(p, b, r, c, x, track);
        if (c + 1 < p.n) epilogue1(p, b, r, c + 1, y, track);
        return;
    }
    x *= p.alpha;
    y *= p.alpha;
    if (p.beta != 0.f) {
        float2 cv = load_out2(p.c, p.out_dtype, b * p.stride_c + r * p.ldc + c);
        x += p.beta * cv.x;
        y += p.beta * cv.y;
    }
    if (p.bias) {
        float2 bv = load_out2(p.bias, p.bias_dtype, c);
        x += bv.x;
        y += bv.y;
    }
    x = activate(p.activation, x);
    y = activate(p.activation, y);
    track(x);
    track(y);
    store_out2(p.d, p.out_dtype, b * p.stride_d + r * p.ldd + c, x, y);
}

// Eight consecutive elements of an output-typed row at i (16-byte aligned: 32 bytes for f32).
__device__ __forceinline__ void load_out8(const void* p, int dtype, long long i, float (&v)[8]) {
    if (dtype == OUT_F32) {
        const float4 lo = *reinterpret_cast<const float4*>(static_cast<const float*>(p) + i);
        const float4 hi = *reinterpret_cast<const float4*>(static_cast<const float*>(p) + i + 4);
        v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w;
        v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
        return;
    }
    const uint4 raw = *reinterpret_cast<const uint4*>(static_cast<const __half*>(p) + i);
    const unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        if (dtype == OUT_F16) {
            const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[j]));
            v[2 * j] = f.x, v[2 * j + 1] = f.y;
        } else {
            const __nv_bfloat162 h = *reinterpret_cast<const __nv_bfloat162*>(&w[j]);
            v[2 * j] = __bfloat162float(h.x), v[2 * j + 1] = __bfloat162float(h.y);
        }
    }
}

// The epilogue for columns c .. c + 7 of row r of batch b, in 16-byte loads and stores: the host
// sets p.reserved when the rows of D (and C, and the bias) allow it (16-byte aligned at every
// column that is a multiple of 8), and the caller checks c + 8 <= n.
// Not for ACT_RELU_MASK (the host never sets p.reserved with it).
template <class Track = NoTrack>
__device__ __forceinline__ void epilogue8(const GemmParams& p, int b, int r, int c, float (&v)[8],
                                          Track track = {}) {
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] *= p.alpha;
    if (p.beta != 0.f) {
        float cv[8];
        load_out8(p.c, p.out_dtype, b * p.stride_c + r * p.ldc + c, cv);
#pragma unroll
        for (int e = 0; e < 8; ++e) v[e] += p.beta * cv[e];
    }
    if (p.bias) {
        float bv[8];
        load_out8(p.bias, p.bias_dtype, c, bv);
#pragma unroll
        for (int e = 0; e < 8; ++e) v[e] += bv[e];
    }
    if (p.activation != ACT_NONE) {
#pragma unroll
        for (int e = 0; e < 8; ++e) v[e] = activate(p.activation, v[e]);
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) track(v[e]);
    const long long i = b * p.stride_d + r * p.ldd + c;
    if (p.out_dtype == OUT_F32) {
        float* d = static_cast<float*>(p.d) + i;
        *reinterpret_cast<float4*>(d) = make_float4(v[0], v[1], v[2], v[3]);
        *reinterpret_cast<float4*>(d + 4) = make_float4(v[4], v[5], v[6], v[7]);
        return;
    }
    unsigned w[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        if (p.out_dtype == OUT_F16) {
            const __half2 h = __floats2half2_rn(v[2 * j], v[2 * j + 1]);
            w[j] = *reinterpret_cast<const unsigned*>(&h);
        } else {
            __nv_bfloat162 h;
            h.x = __float2bfloat16_rn(v[2 * j]);
            h.y = __float2bfloat16_rn(v[2 * j + 1]);
            w[j] = *reinterpret_cast<const unsigned*>(&h);
        }
    }
    *reinterpret_cast<uint4*>(static_cast<__half*>(p.d) + i) = make_uint4(w[0], w[1], w[2], w[3]);
}

// Where split `s` of batch `b` keeps its partial sum for (r, c).
__device__ __forceinline__ long long workspace_index(const GemmParams& p, int s, int b, int r, int c) {
    return ((static_cast<long long>(s) * p.batch + b) * p.m + r) * p.n + c;
}

// Stores columns c and c + 1 of row r: the f32 partial sums of split-K slice `split`, or, without
// split-K, through the epilogue (which shows track the values).
template <class Track = NoTrack>
__device__ __forceinline__ void store_result(const GemmParams& p, int split, int b, int r, int c,
                                             float x, float y, Track track = {}) {
    if (p.splits > 1) {
        p.workspace[workspace_index(p, split, b, r, c)] = x;
        if (c + 1 < p.n) p.workspace[workspace_index(p, split, b, r, c + 1)] = y;
    } else {
        epilogue2(p, b, r, c, x, y, track);
    }
}

// The 32-bit shared-memory address of a generic pointer into shared memory.
__device__ __forceinline__ unsigned smem_u32(const void* p) {
    return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// The block tile a block works on: grouped ("swizzled") order over M so that consecutive blocks
// share B tiles in L2; blockIdx.y is batch x split-K slice.
struct TileCoord {
    int m0, n0, batch, split;
};
template <int BM, int BN>
__device__ __forceinline__ TileCoord tile_coord(const GemmParams& p) {
    constexpr int GROUP_M = 8;
    const int tiles_m = (p.m + BM - 1) / BM, tiles_n = (p.n + BN - 1) / BN;
    const int pid = blockIdx.x;
    const int group = GROUP_M * tiles_n;
    const int first_m = (pid / group) * GROUP_M;
    const int gsize = min(tiles_m - first_m, GROUP_M);
    const int tm = first_m + (pid % group) % gsize;
    const int tn = (pid % group) / gsize;
    return {tm * BM, tn * BN, static_cast<int>(blockIdx.y) / p.splits,
            static_cast<int>(blockIdx.y) % p.splits};
}

// tile_coord for tile `pid` of `m` rows and slice `y`, for persistent kernels that walk several
// tiles (a kernel walking several GEMMs of p.n columns passes each one's rows).
template <int BM, int BN>
__device__ __forceinline__ TileCoord tile_coord_at(int m, const GemmParams& p, int pid, int y) {
    constexpr int GROUP_M = 8;
    const int tiles_m = (m + BM - 1) / BM, tiles_n = (p.n + BN - 1) / BN;
    const int group = GROUP_M * tiles_n;
    const int first_m = (pid / group) * GROUP_M;
    const int gsize = min(tiles_m - first_m, GROUP_M);
    return {(first_m + (pid % group) % gsize) * BM, ((pid % group) / gsize) * BN, y / p.splits,
            y % p.splits};
}

template <int BM, int BN>
__device__ __forceinline__ TileCoord tile_coord_at(const GemmParams& p, int pid, int y) {
    return tile_coord_at<BM, BN>(p.m, p, pid, y);
}

// Sums the split-K partials and applies the epilogue: one thread per output element.
__device__ __forceinline__ void splitk_reduce(const GemmParams& p) {
    const long long mn = static_cast<long long>(p.m) * p.n;
    const long long total = mn * p.batch;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
        const int b = static_cast<int>(i / mn);
        const long long rem = i % mn;
        const int r = static_cast<int>(rem / p.n), c = static_cast<int>(rem % p.n);
        float acc = 0.f;
        for (int s = 0; s < p.splits; ++s) acc += p.workspace[workspace_index(p, s, b, r, c)];
        epilogue1(p, b, r, c, acc);
    }
}

}  // namespace hk
