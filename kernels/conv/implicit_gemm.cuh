// Implicit-GEMM convolution forward (fprop) on tensor cores, shared by the compute_75 and
// compute_80 paths: the GEMM of mma_pipeline.cuh with its A operand gathered from the input on
// the fly (im2col never materialized).
//
//   M = N*P*Q output pixels, N_gemm = K output channels, K_gemm = R*S*C (filter taps x channels)
//   A (M x K_gemm, K-contiguous): row m = pixel (n, p, q), column k = (r, s, c) of the tap it
//     reads, x[n, p*stride_h - pad_h + r*dil_h, q*stride_w - pad_w + s*dil_w, c], zero outside.
//   B (K_gemm x N_gemm, K-contiguous): the KRSC filter as it is stored, K rows of R*S*C.
//   D: the NHWC output, (N*P*Q) x K row-major, through the GEMM epilogue (bias per output
//     channel, ReLU, f16/bf16/f32 out), eight channels per 16-byte store where y and bias allow
//     (p.reserved = 1), or f32 split-K partials.
//
// Assumes C % 8 == 0 and 16-byte aligned x and w: a 16-byte chunk of 8 channels never straddles
// two taps, so each chunk is one cp.async (zero-filled when the tap falls in the padding or past
// the tile's edge). The _c4 kernels (compute_80) gather 4 channels per 8-byte cp.async instead
// and need C % 4 == 0 and 8-byte aligned x. Other channel counts go through the padded path
// (the host copies x with C rounded up, and the filter with rows of R*S*C' rounded up to 8). Block tile BM x BN x BK, STAGES-deep cp.async pipeline,
// ldmatrix + mma.sync m16n8k16 (two m16n8k8 on Sm75, with synchronous loads and two stages).
#pragma once
#include "conv/conv_shape.cuh"
#include "gemm/mma_pipeline.cuh"

namespace hk {

// 8-byte cp.async (the .ca form: .cg copies 16 bytes only), zero-filling past `bytes`.
__device__ __forceinline__ void cp_async8(void* dst, const void* src, int bytes) {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(bytes));
#endif
}

// The A-tile loader: each thread copies chunk column c of rows r0, r0 + RSTEP, ... of the tile
// (as TileLoader does), with the output pixel of each of its rows decoded once per block, and
// the filter tap of its chunk advanced incrementally from one K tile to the next. VEC = 8: one
// 16-byte copy per chunk (C % 8 == 0). VEC = 4: two 8-byte copies per chunk, each with its own
// tap (C % 4 == 0), so that C = 3 is padded to 4 rather than 8.
template <typename T, int ROWS, int THREADS, int BK, int VEC, bool ASYNC>
struct Im2colLoader {
    static constexpr int CHUNKS = BK / 8;
    static constexpr int RSTEP = THREADS / CHUNKS;
    static constexpr int ITERS = ROWS * CHUNKS / THREADS;
    static constexpr int PARTS = 8 / VEC;  // copies per chunk
    static_assert(VEC == 8 || (VEC == 4 && ASYNC), "4-element copies need cp.async");
    static_assert(THREADS % CHUNKS == 0 && (ROWS * CHUNKS) % THREADS == 0, "uneven tile split");
    static_assert(RSTEP % 8 == 0, "the swizzle must repeat every RSTEP rows");

    const T* x;
    int off[ITERS];  // offset of element (n, h0, w0, 0) of the row's pixel (may be negative)
    int h0[ITERS];   // p * stride_h - pad_h; far negative for rows past M
    int w0[ITERS];   // q * stride_w - pad_w
    int smem0;
    // Per copy of the chunk: its K_gemm index in the current tile, its tap (r, s) and first
    // channel, the tap's input displacement and element offset.
    int kpos[PARTS], fr[PARTS], fs[PARTS], fc[PARTS], dh[PARTS], dw[PARTS], koff[PARTS];

    __device__ __forceinline__ void retap(const ConvShape& cs, int v) {
        dh[v] = fr[v] * cs.dil_h;
        dw[v] = fs[v] * cs.dil_w;
        koff[v] = (dh[v] * cs.w + dw[v]) * cs.c + fc[v];
    }

    __device__ __forceinline__ Im2colLoader(const T* x_, const ConvShape& cs, int m0, int m_lim,
                                            int k_begin) {
        x = x_;
        const int c = threadIdx.x % CHUNKS;
        const int r0 = threadIdx.x / CHUNKS;
        smem0 = swizzle<CHUNKS>(r0, c);
        const int pq = cs.p * cs.q;
#pragma unroll
        for (int it = 0; it < ITERS; ++it) {
            const int m = m0 + r0 + it * RSTEP;
            if (m < m_lim) {
                const int n = m / pq;
                const int rem = m - n * pq;
                const int op = rem / cs.q;
                const int oq = rem - op * cs.q;
                h0[it] = op * cs.stride_h - cs.pad_h;
                w0[it] = oq * cs.stride_w - cs.pad_w;
                off[it] = ((n * cs.h + h0[it]) * cs.w + w0[it]) * cs.c;
            } else {
                h0[it] = -(1 << 30);
                w0[it] = 0;
                off[it] = 0;
            }
        }
#pragma unroll
        for (int v = 0; v < PARTS; ++v) {
            kpos[v] = k_begin + c * 8 + v * VEC;
            fc[v] = kpos[v] % cs.c;
            const int tap = kpos[v] / cs.c;
            fs[v] = tap % cs.s;
            fr[v] = tap / cs.s;
            retap(cs, v);
        }
    }

    // Copies part `part` of `parts` of the current K tile into `tile`; the last part moves the
    // loader to the next tile.
    __device__ __forceinline__ void load(T* tile, const ConvShape& cs, int k_end, int part = 0,
                                         int parts = 1) {
#pragma unroll
        for (int it = 0; it < ITERS; ++it) {
            if (it % parts != part) continue;
            T* dst = tile + smem0 + it * RSTEP * CHUNKS * 8;
#pragma unroll
            for (int v = 0; v < PARTS; ++v) {
                const bool in = kpos[v] < k_end &&
                                static_cast<unsigned>(h0[it] + dh[v]) < static_cast<unsigned>(cs.h) &&
                                static_cast<unsigned>(w0[it] + dw[v]) < static_cast<unsigned>(cs.w);
                const T* src = in ? x + (off[it] + koff[v]) : x;
                if (VEC == 4) {
                    cp_async8(dst + v * 4, src, in ? 8 : 0);
                } else if (ASYNC) {
                    cp_async16(dst, src, in ? 16 : 0);
                } else if (in) {
                    *reinterpret_cast<uint4*>(dst) = __ldg(reinterpret_cast<const uint4*>(src));
                } else {
                    *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
                }
            }
        }
        if (part == parts - 1) {
#pragma unroll
            for (int v = 0; v < PARTS; ++v) {
                kpos[v] += BK;
                fc[v] += BK;
                while (fc[v] >= cs.c) {
                    fc[v] -= cs.c;
                    if (++fs[v] == cs.s) {
                        fs[v] = 0;
                        ++fr[v];
                    }
                }
                retap(cs, v);
            }
        }
    }
};

template <typename T, int VEC, int BM, int BN, int BK, int WM, int WN, int STAGES, typename Policy>
__device__ __forceinline__ void conv_mainloop(const GemmParams& p, const ConvShape& cs) {
    static_assert(BK == 32 || BK == 64, "the swizzle handles rows of 4 or 8 chunks");
    constexpr int WARPS_M = BM / WM, WARPS_N = BN / WN, THREADS = WARPS_M * WARPS_N * 32;
    constexpr int MT = WM / 16, NT = WN / 8;
    constexpr int A_ELEMS = BM * BK, B_ELEMS = BN * BK, STAGE = A_ELEMS + B_ELEMS;
    constexpr bool ASYNC = Policy::kAsyncCopy;
    constexpr int STAGES_USED = Policy::kAsyncCopy ? STAGES : 2;

    extern __shared__ __align__(128) unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    {
        unsigned dynamic_smem;
        asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_smem));
        if (dynamic_smem < static_cast<unsigned>(gemm_smem_bytes<BM, BN, BK, STAGES_USED, T>())) __trap();
    }

    const TileCoord tc = tile_coord<BM, BN>(p);
    const int k_begin = tc.split * p.k_per_split;
    const int k_end = min(p.k, k_begin + p.k_per_split);
    const int k_tiles = k_end > k_begin ? (k_end - k_begin + BK - 1) / BK : 0;

    const int warp = threadIdx.x >> 5;
    const int wm0 = (warp % WARPS_M) * WM, wn0 = (warp / WARPS_M) * WN;

    Im2colLoader<T, BM, THREADS, BK, VEC, ASYNC> loader_a(static_cast<const T*>(p.a), cs, tc.m0, p.m,
                                                     k_begin);
    TileLoader<T, BN, BK / 8, THREADS, BK, false, ASYNC> loader_b(static_cast<const T*>(p.b), p.ldb,
                                                                  tc.n0, k_begin, p.n);
    auto load_stage = [&](int stage, int k0, int part = 0, int parts = 1) {
        T* sa = smem + stage * STAGE;
        T* sb = sa + A_ELEMS;
        loader_a.load(sa, cs, k_end, part, parts);
        loader_b.load(sb, k0, k_end, part, parts);
    };

    // Both operands are K-contiguous: plain ldmatrix for A and B.
    auto load_fragments = [&](const T* sa, const T* sb, int kk, unsigned (&af)[MT][4],
                              unsigned (&bf)[NT][2]) {
        mma_fragments<BM, BN, BK, true, true>(sa, sb, kk, wm0, wn0, af, bf);
    };

    float acc[MT][NT][4];
    mma_mainloop<T, Policy, MT, NT, BK, STAGES_USED, A_ELEMS, STAGE>(smem, k_tiles, k_begin,
                                                                     load_stage, load_fragments,
                                                                     acc);

    // The GEMM's epilogue with eight output channels per thread where y and the bias allow it.
    store_tile<BM, BN, WM, WN, true>(p, tc, acc);
}

}  // namespace hk

// One extern "C" kernel per (type, input vector, tile):
//   conv_<arch>_<f16|bf16>[_c4]_<BM>x<BN>x<BK>x<STAGES>(GemmParams, ConvShape)
// _c4: the 4-channel gather (C % 4 == 0); without it, 8 channels (C % 8 == 0).
#define HK_CONV_KERNEL(ARCH, POLICY, TNAME, T, VNAME, VEC, BM, BN, BK, WM, WN, ST, MINB)        \
    extern "C" __global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32, MINB)               \
        conv_##ARCH##_##TNAME##VNAME##_##BM##x##BN##x##BK##x##ST(hk::GemmParams p,              \
                                                                 hk::ConvShape cs) {            \
        hk::conv_mainloop<T, VEC, BM, BN, BK, WM, WN, ST, hk::POLICY>(p, cs);                   \
    }
