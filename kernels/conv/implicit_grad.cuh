// Implicit-GEMM convolution backward on tensor cores: the gradients of y = conv(x, w) with
// respect to the input (dgrad) and the filter (wgrad), each a GEMM whose operands are gathered
// on the fly, on mma_pipeline.cuh's main loop (cp.async, ldmatrix, mma.sync) and epilogue.
//
// dgrad: dx = dy · wᵀ.  M = N·H·W input pixels, N_gemm = C channels, K_gemm = R·S·K.
//   A (M × K_gemm, K-contiguous): row m = pixel (n, h, w) of dx; column (r, s, k) = channel k of
//     the output pixel to which filter tap (r, s) carries x[n, h, w]:
//     dy[n, (h + pad_h − r·dil_h) / stride_h, (w + pad_w − s·dil_w) / stride_w, k] where both
//     divisions are exact and land inside P × Q, zero otherwise.
//   B (K_gemm × C, rows along K_gemm): row (r, s, k) = tap (r, s) of filter k, C channels.
//   D: dx, (N·H·W) × C row-major (NHWC).
// wgrad: dw = dyᵀ · im2col(x).  M = K, N_gemm = R·S·C, K_gemm = N·P·Q output pixels.
//   A (K × K_gemm, M-contiguous): dy as stored, (N·P·Q) × K row-major.
//   B (K_gemm × N_gemm, rows along K_gemm): row (n, p, q), column (r, s, c) = the input element
//     x[n, p·stride_h − pad_h + r·dil_h, q·stride_w − pad_w + s·dil_w, c] (zero in the padding).
//   D: dw, K × (R·S·C) row-major (KRSC); long reductions split K into f32 partials.
//
// Assumes groups == 1, C % 8 == 0, K % 8 == 0 and 16-byte aligned x, w and dy: every 16-byte
// chunk is eight channels of one pixel and tap. A strided dgrad runs one GEMM per phase
// (conv_shape.cuh's DgradPhase: the input pixels whose rows and columns leave the same remainders
// by the strides, and the taps that reach an output pixel from them), so no tap is read as a
// zero between output pixels; stride 1 is one phase.
#pragma once
#include "conv/conv_shape.cuh"
#include "gemm/mma_pipeline.cuh"

namespace hk {

// One 16-byte chunk of a gathered operand into shared memory: cp.async (zero-filled where `in`
// is false) on compute_80, a plain load and store on compute_75.
template <bool ASYNC, typename T>
__device__ __forceinline__ void copy_chunk(T* dst, const T* src, bool in) {
    if constexpr (ASYNC) {
        cp_async16(dst, src, in ? 16 : 0);
    } else {
        *reinterpret_cast<uint4*>(dst) =
            in ? __ldg(reinterpret_cast<const uint4*>(src)) : make_uint4(0, 0, 0, 0);
    }
}

// The dgrad A-tile loader (as TileLoader: each thread copies chunk column c of rows r0, r0 +
// RSTEP, ...) for one phase (conv_shape.cuh's DgradPhase): each row's pixel decoded once per
// block, the chunk's (tap, k) advanced from one K tile to the next; the output pixel a tap
// reaches is the phase's arithmetic, without division.
template <typename T, int ROWS, int THREADS, int BK, bool ASYNC>
struct DgradLoader {
    static constexpr int CHUNKS = BK / 8;
    static constexpr int RSTEP = THREADS / CHUNKS;
    static constexpr int ITERS = ROWS * CHUNKS / THREADS;
    static_assert(THREADS % CHUNKS == 0 && (ROWS * CHUNKS) % THREADS == 0, "uneven tile split");
    static_assert(RSTEP % 8 == 0, "the swizzle must repeat every RSTEP rows");

    const T* dy;
    int img[ITERS];  // n·P·Q·K: the row's image in dy
    int pb[ITERS];   // pbase + i: the output row of tap t = 0
    int qb[ITERS];   // qbase + j
    unsigned rows_in;  // which of the ITERS rows lie inside M
    int smem0;
    int kpos, fk, fu, ft;  // the chunk's K_gemm index, its channel k and phase tap (t, u)

    __device__ __forceinline__ DgradLoader(const T* dy_, const ConvShape& cs, const DgradPhase& ph,
                                           int m0, int m_lim, int k_begin) {
        dy = dy_;
        const int c = threadIdx.x % CHUNKS, r0 = threadIdx.x / CHUNKS;
        smem0 = swizzle<CHUNKS>(r0, c);
        const int plane = ph.rows * ph.cols;
        rows_in = 0;
#pragma unroll
        for (int it = 0; it < ITERS; ++it) {
            const int m = m0 + r0 + it * RSTEP;
            img[it] = pb[it] = qb[it] = 0;
            if (m < m_lim) {
                const int n = m / plane;
                const int rem = m - n * plane;
                const int i = rem / ph.cols;
                img[it] = n * cs.p * cs.q * cs.k;
                pb[it] = ph.pbase + i;
                qb[it] = ph.qbase + rem - i * ph.cols;
                rows_in |= 1u << it;
            }
        }
        kpos = k_begin + c * 8;
        fk = kpos % cs.k;
        const int tap = kpos / cs.k;
        const int taps_w = max(ph.taps_w, 1);  // a phase with no tap loads nothing
        fu = tap % taps_w;
        ft = tap / taps_w;
    }

    __device__ __forceinline__ void load(T* tile, const ConvShape& cs, const DgradPhase& ph,
                                         int k_end, int part, int parts) {
        const int dp = ft * ph.dp, dq = fu * ph.dq;
#pragma unroll
        for (int it = 0; it < ITERS; ++it) {
            if (it % parts != part) continue;
            const int op = pb[it] - dp, oq = qb[it] - dq;
            const bool in = kpos < k_end && ((rows_in >> it) & 1u) &&
                            static_cast<unsigned>(op) < static_cast<unsigned>(cs.p) &&
                            static_cast<unsigned>(oq) < static_cast<unsigned>(cs.q);
            const T* src = in ? dy + img[it] + (op * cs.q + oq) * cs.k + fk : dy;
            copy_chunk<ASYNC>(tile + smem0 + it * RSTEP * CHUNKS * 8, src, in);
        }
        if (part == parts - 1) {
            kpos += BK;
            fk += BK;
            while (fk >= cs.k) {
                fk -= cs.k;
                if (++fu == ph.taps_w) {
                    fu = 0;
                    ++ft;
                }
            }
        }
    }
};

// The dgrad B-tile loader (tile rows along K_gemm = (t, u, k), columns along C): row (t, u, k)
// is the phase's tap (r0 + t·tr, s0 + u·ts) of filter k, whose C channels are contiguous.
template <typename T, int COLS, int THREADS, int BK, bool ASYNC>
struct FilterTapLoader {
    static constexpr int CHUNKS = COLS / 8;
    static constexpr int RSTEP = THREADS / CHUNKS;
    static constexpr int ITERS = BK * CHUNKS / THREADS;
    static_assert(THREADS % CHUNKS == 0 && (BK * CHUNKS) % THREADS == 0, "uneven tile split");
    static_assert(RSTEP % 8 == 0, "the swizzle must repeat every RSTEP rows");

    const T* w;
    int smem0, ch, kpos;
    bool col_in;

    __device__ __forceinline__ FilterTapLoader(const T* w_, const ConvShape& cs, int n0,
                                               int k_begin) {
        w = w_;
        const int c = threadIdx.x % CHUNKS, r0 = threadIdx.x / CHUNKS;
        smem0 = swizzle<CHUNKS>(r0, c);
        ch = n0 + c * 8;
        col_in = ch < cs.c;
        kpos = k_begin + r0;
    }

    __device__ __forceinline__ void load(T* tile, const ConvShape& cs, const DgradPhase& ph,
                                         int k_end, int part, int parts) {
#pragma unroll
        for (int it = 0; it < ITERS; ++it) {
            if (it % parts != part) continue;
            const int kg = kpos + it * RSTEP;
            const bool in = col_in && kg < k_end;
            const int k = kg % cs.k, tap = kg / cs.k;
            const int taps_w = max(ph.taps_w, 1);  // a phase with no tap loads nothing
            const int t = tap / taps_w, u = tap - t * taps_w;
            const int r = ph.r0 + t * ph.tr, s = ph.s0 + u * ph.ts;
            const T* src = in ? w + ((k * cs.r + r) * cs.s + s) * cs.c + ch : w;
            copy_chunk<ASYNC>(tile + smem0 + it * RSTEP * CHUNKS * 8, src, in);
        }
        if (part == parts - 1) kpos += BK;
    }
};

// The wgrad B-tile loader (tile rows along K_gemm = output pixels (n, p, q), columns along
// (r, s, c)): each thread's chunk column is one tap and eight channels for the whole block;
// each row's pixel is decoded per K tile.
template <typename T, int COLS, int THREADS, int BK, bool ASYNC>
struct PatchLoader {
    static constexpr int CHUNKS = COLS / 8;
    static constexpr int RSTEP = THREADS / CHUNKS;
    static constexpr int ITERS = BK * CHUNKS / THREADS;
    static_assert(THREADS % CHUNKS == 0 && (BK * CHUNKS) % THREADS == 0, "uneven tile split");
    static_assert(RSTEP % 8 == 0, "the swizzle must repeat every RSTEP rows");

    const T* x;
    int smem0, c0, dh, dw, kpos;
    bool col_in;

    __device__ __forceinline__ PatchLoader(const T* x_, const ConvShape& cs, int n0, int k_begin) {
        x = x_;
        const int c = threadIdx.x % CHUNKS, r0 = threadIdx.x / CHUNKS;
        smem0 = swizzle<CHUNKS>(r0, c);
        const int col = n0 + c * 8;
        col_in = col < cs.r * cs.s * cs.c;
        c0 = col % cs.c;
        const int tap = col / cs.c;
        dh = (tap / cs.s) * cs.dil_h - cs.pad_h;
        dw = (tap % cs.s) * cs.dil_w - cs.pad_w;
        kpos = k_begin + r0;
    }

    __device__ __forceinline__ void load(T* tile, const ConvShape& cs, int k_end, int part,
                                         int parts) {
        const int pq = cs.p * cs.q;
#pragma unroll
        for (int it = 0; it < ITERS; ++it) {
            if (it % parts != part) continue;
            const int npq = kpos + it * RSTEP;
            const int n = npq / pq, rem = npq - n * pq;
            const int op = rem / cs.q, oq = rem - op * cs.q;
            const int ih = op * cs.stride_h + dh, iw = oq * cs.stride_w + dw;
            const bool in = col_in && npq < k_end &&
                            static_cast<unsigned>(ih) < static_cast<unsigned>(cs.h) &&
                            static_cast<unsigned>(iw) < static_cast<unsigned>(cs.w);
            const T* src = in ? x + ((n * cs.h + ih) * cs.w + iw) * cs.c + c0 : x;
            copy_chunk<ASYNC>(tile + smem0 + it * RSTEP * CHUNKS * 8, src, in);
        }
        if (part == parts - 1) kpos += BK;
    }
};

// The K range of this block's split-K slice.
struct KSlice {
    int begin, end, tiles;
};
template <int BK>
__device__ __forceinline__ KSlice k_slice(const GemmParams& p, const TileCoord& tc) {
    const int begin = tc.split * p.k_per_split;
    const int end = min(p.k, begin + p.k_per_split);
    return {begin, end, end > begin ? (end - begin + BK - 1) / BK : 0};
}

// One block tile of a gathered GEMM: checks the dynamic shared memory, runs the main loop with
// `load_stage` (A's tile rows along M if A_KC, else along K; B's along K), stores the tile
// (row m of the GEMM at D's row `row_map(m)`).
template <typename T, typename Policy, int BM, int BN, int BK, int WM, int WN, int STAGES,
          bool A_KC, typename LoadStage, typename RowMap = SameRow>
__device__ __forceinline__ void grad_tile(const GemmParams& p, const TileCoord& tc,
                                          const KSlice& ks, LoadStage& load_stage,
                                          RowMap row_map = {}) {
    static_assert(BK == 32 || BK == 64, "the swizzle handles rows of 4 or 8 chunks");
    static_assert(Policy::kAsyncCopy || STAGES == 2, "synchronous loads double-buffer");
    constexpr int WARPS_M = BM / WM, MT = WM / 16, NT = WN / 8;
    constexpr int A_ELEMS = BM * BK, STAGE = A_ELEMS + BN * BK;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    const T* smem = reinterpret_cast<const T*>(smem_raw);
    {
        unsigned dynamic_smem;
        asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_smem));
        if (dynamic_smem < static_cast<unsigned>(gemm_smem_bytes<BM, BN, BK, STAGES, T>())) __trap();
    }
    const int warp = threadIdx.x >> 5;
    const int wm0 = (warp % WARPS_M) * WM, wn0 = (warp / WARPS_M) * WN;
    auto load_fragments = [&](const T* sa, const T* sb, int kk, unsigned (&af)[MT][4],
                              unsigned (&bf)[NT][2]) {
        mma_fragments<BM, BN, BK, A_KC, false>(sa, sb, kk, wm0, wn0, af, bf);
    };
    float acc[MT][NT][4];
    mma_mainloop<T, Policy, MT, NT, BK, STAGES, A_ELEMS, STAGE>(smem, ks.tiles, ks.begin, load_stage,
                                                              load_fragments, acc);
    store_tile<BM, BN, WM, WN>(p, tc, acc, row_map);
}

// The dx row (N·H·W numbering) of a phase's GEMM row m: pixel (n, h0 + i·stride_h, w0 + j·stride_w).
struct PhaseRows {
    const ConvShape& cs;
    const DgradPhase& ph;
    __device__ __forceinline__ int operator()(int m) const {
        const int plane = ph.rows * ph.cols;
        const int n = m / plane, rem = m - n * plane;
        const int i = rem / ph.cols, j = rem - i * ph.cols;
        return (n * cs.h + ph.h0 + i * cs.stride_h) * cs.w + ph.w0 + j * cs.stride_w;
    }
};

// dgrad of the block's phase: p.a = dy, p.b = w, p.d = dx (M = N·rows·cols pixels of the phase, N = C,
// K = taps_h·taps_w·K; rows stored at their place in dx's N·H·W).
template <typename T, typename Policy, int BM, int BN, int BK, int WM, int WN, int STAGES>
__device__ __forceinline__ void dgrad(const GemmParams& params, const ConvShape& cs,
                                      const DgradPhases& phases) {
    constexpr int THREADS = (BM / WM) * (BN / WN) * 32;
    // This block's phase (blockIdx.z) is a GEMM of its own: M = its pixels, K = its taps x K.
    // The grid spans the largest phase: blocks past this one's tiles have nothing to do.
    const DgradPhase& ph = phases.ph[blockIdx.z];
    GemmParams p = params;
    p.m = cs.n * ph.rows * ph.cols;
    p.k = ph.taps_h * ph.taps_w * cs.k;
    if (blockIdx.x >= ((p.m + BM - 1) / BM) * ((p.n + BN - 1) / BN)) return;
    const TileCoord tc = tile_coord<BM, BN>(p);
    const KSlice ks = k_slice<BK>(p, tc);
    DgradLoader<T, BM, THREADS, BK, Policy::kAsyncCopy> la(static_cast<const T*>(p.a), cs, ph, tc.m0, p.m, ks.begin);
    FilterTapLoader<T, BN, THREADS, BK, Policy::kAsyncCopy> lb(static_cast<const T*>(p.b), cs, tc.n0, ks.begin);
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    auto load_stage = [&](int stage, int, int part = 0, int parts = 1) {
        T* sa = smem + stage * (BM + BN) * BK;
        la.load(sa, cs, ph, ks.end, part, parts);
        lb.load(sa + BM * BK, cs, ph, ks.end, part, parts);
    };
    grad_tile<T, Policy, BM, BN, BK, WM, WN, STAGES, true>(p, tc, ks, load_stage, PhaseRows{cs, ph});
}

// wgrad: p.a = dy (lda = K), p.b = x, p.d = dw or the split-K workspace (M = K, N = R·S·C,
// K = N·P·Q).
template <typename T, typename Policy, int BM, int BN, int BK, int WM, int WN, int STAGES>
__device__ __forceinline__ void wgrad(const GemmParams& p, const ConvShape& cs,
                                      const DgradPhases&) {
    constexpr int THREADS = (BM / WM) * (BN / WN) * 32;
    const TileCoord tc = tile_coord<BM, BN>(p);
    const KSlice ks = k_slice<BK>(p, tc);
    TileLoader<T, BK, BM / 8, THREADS, BK, true, Policy::kAsyncCopy> la(static_cast<const T*>(p.a), p.lda, tc.m0,
                                                         ks.begin, p.m);
    PatchLoader<T, BN, THREADS, BK, Policy::kAsyncCopy> lb(static_cast<const T*>(p.b), cs, tc.n0, ks.begin);
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    auto load_stage = [&](int stage, int k0, int part = 0, int parts = 1) {
        T* sa = smem + stage * (BM + BN) * BK;
        la.load(sa, k0, ks.end, part, parts);
        lb.load(sa + BM * BK, cs, ks.end, part, parts);
    };
    grad_tile<T, Policy, BM, BN, BK, WM, WN, STAGES, false>(p, tc, ks, load_stage);
}

}  // namespace hk

// One extern "C" kernel per (gradient, arch, type, tile):
//   conv_<dgrad|wgrad>_<sm80|sm75>_<f16|bf16>_<BM>x<BN>x<BK>x<STAGES>(GemmParams, ConvShape,
//   DgradPhases) (wgrad ignores the phases)
#define HK_CONV_GRAD_KERNEL(GRAD, ARCH, POLICY, TNAME, T, BM, BN, BK, WM, WN, ST, MINB)         \
    extern "C" __global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32, MINB)               \
        conv_##GRAD##_##ARCH##_##TNAME##_##BM##x##BN##x##BK##x##ST(                             \
            hk::GemmParams p, hk::ConvShape cs, hk::DgradPhases ph) {                            \
        hk::GRAD<T, hk::POLICY, BM, BN, BK, WM, WN, ST>(p, cs, ph);                             \
    }
