// hikube-archs: compute_70
//
// GEMM for compute capability 7.0 (Tesla V100) through the WMMA API (HMMA.884 on Volta):
// block tile 64x64x32, 4 warps of 32x32 (2x2 fragments of 16x16x16), f16 in, f32 accumulators
// (f16) or f16 ones (f16_acc16: ComputeType::F16).
// Global -> shared through registers (16-byte vectors when ALIGNED, else element by element),
// rows padded by 8 halves (WMMA loads need a plain leading dimension, so no XOR swizzle).
// Epilogue: accumulators parked in shared memory, then the shared epilogue of gemm_params.cuh.
// f16 only: BF16 tensor cores need compute capability 8.0.
#include "gemm/gemm_params.cuh"
#include <mma.h>

namespace hk {
namespace sm70 {

using namespace nvcuda;
template <bool B, typename X, typename Y>
struct Pick {
    using type = X;
};
template <typename X, typename Y>
struct Pick<false, X, Y> {
    using type = Y;
};

constexpr int BM = 64, BN = 64, BK = 32, THREADS = 128, PAD = 8;

// Copies a ROWS x COLS tile (COLS contiguous) at (row0, col0) into shared rows of COLS + PAD.
template <int ROWS, int COLS, bool ALIGNED>
__device__ __forceinline__ void load(__half* s, const __half* g, long long ld, int row0, int col0,
                                     int row_lim, int col_lim) {
    constexpr int CHUNKS = COLS / 8;
    for (int i = threadIdx.x; i < ROWS * CHUNKS; i += THREADS) {
        const int r = i / CHUNKS, c = (i % CHUNKS) * 8;
        const int gr = row0 + r, gc = col0 + c;
        const bool in = gr < row_lim && gc < col_lim;
        const int avail = in ? min(8, col_lim - gc) : 0;
        const __half* src = g + (in ? gr * ld + gc : 0);
        __half* dst = s + r * (COLS + PAD) + c;
        if (ALIGNED && avail == 8) {
            *reinterpret_cast<uint4*>(dst) = __ldg(reinterpret_cast<const uint4*>(src));
        } else {
#pragma unroll
            for (int e = 0; e < 8; ++e) dst[e] = e < avail ? src[e] : __float2half(0.f);
        }
    }
}

// AccT: the accumulator type, float or __half.
template <bool A_KC, bool B_KC, bool ALIGNED, typename AccT>
__device__ __forceinline__ void gemm(const GemmParams& p) {
    // Rows of the parked accumulators: a multiple of 16 bytes (what store_matrix_sync needs)
    // that is not a multiple of 128 (no bank conflicts between rows).
    constexpr int OUT_LD = BN + 16 / static_cast<int>(sizeof(AccT));
    // A tile: [BM][BK] (K contiguous) or [BK][BM]; B tile: [BN][BK] or [BK][BN].
    constexpr int A_ELEMS = A_KC ? BM * (BK + PAD) : BK * (BM + PAD);
    constexpr int B_ELEMS = B_KC ? BN * (BK + PAD) : BK * (BN + PAD);
    __shared__ __align__(32) __half sa[A_ELEMS];
    __shared__ __align__(32) __half sb[B_ELEMS];
    __shared__ __align__(32) AccT out[BM * OUT_LD];

    const int tiles_m = (p.m + BM - 1) / BM;
    const int m0 = (blockIdx.x % tiles_m) * BM, n0 = (blockIdx.x / tiles_m) * BN;
    const int batch = blockIdx.y / p.splits, split = blockIdx.y % p.splits;
    const __half* A = static_cast<const __half*>(p.a) + batch * p.stride_a;
    const __half* B = static_cast<const __half*>(p.b) + batch * p.stride_b;
    const int k_begin = split * p.k_per_split, k_end = min(p.k, k_begin + p.k_per_split);
    const int warp = threadIdx.x / 32, wm = (warp % 2) * 32, wn = (warp / 2) * 32;

    using LayoutA = typename Pick<A_KC, wmma::row_major, wmma::col_major>::type;
    using LayoutB = typename Pick<B_KC, wmma::col_major, wmma::row_major>::type;
    wmma::fragment<wmma::accumulator, 16, 16, 16, AccT> acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], static_cast<AccT>(0.f));

    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        if (A_KC) load<BM, BK, ALIGNED>(sa, A, p.lda, m0, k0, p.m, k_end);
        else load<BK, BM, ALIGNED>(sa, A, p.lda, k0, m0, k_end, p.m);
        if (B_KC) load<BN, BK, ALIGNED>(sb, B, p.ldb, n0, k0, p.n, k_end);
        else load<BK, BN, ALIGNED>(sb, B, p.ldb, k0, n0, k_end, p.n);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, LayoutA> af[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, LayoutB> bf[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const int m = wm + i * 16;
                if (A_KC) wmma::load_matrix_sync(af[i], sa + m * (BK + PAD) + kk, BK + PAD);
                else wmma::load_matrix_sync(af[i], sa + kk * (BM + PAD) + m, BM + PAD);
            }
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const int n = wn + j * 16;
                if (B_KC) wmma::load_matrix_sync(bf[j], sb + n * (BK + PAD) + kk, BK + PAD);
                else wmma::load_matrix_sync(bf[j], sb + kk * (BN + PAD) + n, BN + PAD);
            }
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], af[i], bf[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(out + (wm + i * 16) * OUT_LD + wn + j * 16, acc[i][j],
                                    OUT_LD, wmma::mem_row_major);
    __syncthreads();
    for (int idx = threadIdx.x; idx < BM * (BN / 2); idx += THREADS) {
        const int lr = idx / (BN / 2), col = (idx % (BN / 2)) * 2;
        const int r = m0 + lr, c = n0 + col;
        if (r >= p.m || c >= p.n) continue;
        const float x = to_f32(out[lr * OUT_LD + col]), y = to_f32(out[lr * OUT_LD + col + 1]);
        store_result(p, split, batch, r, c, x, y);
    }
}

}  // namespace sm70
}  // namespace hk

// The kernel's tile is fixed (BM, BN, BK and THREADS above); kernels/tiles.toml's [gemm_sm70]
// names it, and the assertion keeps the two in step.
#define HK_SM70_KERNEL(TNAME, ACCT, TILE, MINB, LAYOUT, AKC, BKC, ALNAME, AL)                      \
    extern "C" __global__ void __launch_bounds__(hk::sm70::THREADS, MINB)                         \
        gemm_sm70_##TNAME##_##TILE##_##LAYOUT##_##ALNAME(hk::GemmParams p) {                       \
        hk::sm70::gemm<AKC, BKC, AL, ACCT>(p);                                                     \
    }
#define HK_SM70(TNAME, ACCT, TILE, MINB, LAYOUT, AKC, BKC)                  \
    HK_SM70_KERNEL(TNAME, ACCT, TILE, MINB, LAYOUT, AKC, BKC, aligned, true) \
    HK_SM70_KERNEL(TNAME, ACCT, TILE, MINB, LAYOUT, AKC, BKC, general, false)
#define HK_SM70_ACC(TNAME, ACCT, TILE, MINB)                 \
    HK_SM70(TNAME, ACCT, TILE, MINB, arbr, true, false)      \
    HK_SM70(TNAME, ACCT, TILE, MINB, arbc, true, true)       \
    HK_SM70(TNAME, ACCT, TILE, MINB, acbr, false, false)     \
    HK_SM70(TNAME, ACCT, TILE, MINB, acbc, false, true)
#define HK_TILE(BM_, BN_, BK_, ST, WM, WN, MINB_)                                                 \
    static_assert(BM_ == hk::sm70::BM && BN_ == hk::sm70::BN && BK_ == hk::sm70::BK && ST == 1 && \
                      (BM_ / WM) * (BN_ / WN) * 32 == hk::sm70::THREADS,                          \
                  "kernels/tiles.toml's [gemm_sm70] is the kernel's fixed tile");
// Its aligned and general kernels are the same tile.
#define HK_TILE_GENERAL(BM_, BN_, BK_, ST, WM, WN, MINB_) \
    HK_SM70_ACC(f16, float, BM_##x##BN_##x##BK_##x##ST, MINB_)  \
    HK_SM70_ACC(f16_acc16, __half, BM_##x##BN_##x##BK_##x##ST, MINB_)
#include "hikube_tiles.inc"

extern "C" __global__ void gemm_sm70_splitk_reduce(hk::GemmParams p) { hk::splitk_reduce(p); }
