// hikube-archs: compute_89
//
// FP8 GEMM for Ada (RTX 40, L4, L40S; and any later GPU through the driver's JIT):
// D = act(alpha * scale_a * scale_b * (A * B) + beta * C + bias) with A and B both e4m3 or both
// e5m2, f32 accumulation, D in f16, bf16 or f32. The compute_80 GEMM's main loop
// (mma_pipeline.cuh) on pairs of FP8 values (Fp8Pair: the loaders, the swizzle and ldmatrix move
// 16-bit elements, and an m16n8k32 FP8 fragment holds the bytes of an m16n8k16 16-bit one), with
// mma.sync m16n8k32 in place of m16n8k16. A row-major and B column-major (K-major, like the
// Hopper FP8 kernel), aligned only: the host passes K, lda, ldb and the batch strides in pairs
// (multiples of 8, 16-byte aligned operands), no split-K. The tiles are kernels/tiles.toml's
// [gemm_fp8_sm89], BK counted in pairs.
#include "gemm/mma_pipeline.cuh"

// gemm_fp8_sm89_<e4m3|e5m2>_<BM>x<BN>x<BK>x<STAGES>_arbc_aligned(GemmParams, Fp8Scales)
#define HK_FP8_SM89(TNAME, F, BM, BN, BK, ST, WM, WN, MINB)                                       \
    extern "C" __global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32, MINB)              \
        gemm_fp8_sm89_##TNAME##_##BM##x##BN##x##BK##x##ST##_arbc_aligned(hk::GemmParams p,      \
                                                                        hk::Fp8Scales s) {     \
        hk::gemm_mainloop<hk::Fp8Pair<F>, BM, BN, BK, WM, WN, ST, true, true, true, hk::Sm80,  \
                          false, true>(p, s);                                                  \
    }
#define HK_TILE(BM, BN, BK, ST, WM, WN, MINB)                        \
    HK_FP8_SM89(e4m3, hk::Fp8E4M3, BM, BN, BK, ST, WM, WN, MINB)    \
    HK_FP8_SM89(e5m2, hk::Fp8E5M2, BM, BN, BK, ST, WM, WN, MINB)
#include "hikube_tiles.inc"
