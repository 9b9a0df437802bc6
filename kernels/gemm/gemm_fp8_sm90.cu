// hikube-archs: compute_90a
//
// FP8 GEMM for Hopper (H100, H200): D = act(alpha * scale_a * scale_b * (A * B) + beta * C + bias)
// with A and B both e4m3 or both e5m2, f32 accumulation, D in f16, bf16 or f32. The body is the
// f16 kernel's (gemm/sm90_gemm.cuh): stages of 128 K elements (128 bytes a row), four wgmma
// m64nBNk32 per stage. A row-major and B column-major (both K-major: the only layout FP8 wgmma
// reads), no split-K (the plan never splits), the scales read from device memory so that a graph
// replays with new ones, and optionally the largest magnitude of D (amax). Two accumulations:
// promoted (two-level, f32 every 128 K) and fastacc (the tensor cores' own).
#include "gemm/sm90_gemm.cuh"

// Per tile of kernels/tiles.toml's [gemm_fp8_sm90], encoding and accumulation:
// gemm_fp8_sm90_<e4m3|e5m2>_128x<BN>x128x<STAGES>_arbc_<promoted|fastacc>. `promoted`: each
// stage's products summed apart and added to the f32 accumulators (the default, as cuBLASLt's);
// `fastacc`: the tensor cores' own FP8 accumulation over all of K (torch's use_fast_accum).
#define HK_FP8_KERNEL(TNAME, T, BN, ST, MODE, PROMOTE)                                           \
    extern "C" __global__ void __launch_bounds__(hk::sm90::THREADS, 1)                           \
        gemm_fp8_sm90_##TNAME##_128x##BN##x128x##ST##_arbc_##MODE(                               \
            hk::GemmParams p, const __grid_constant__ hk::sm90::TmaDesc a,                       \
            const __grid_constant__ hk::sm90::TmaDesc b, hk::Fp8Scales scales) {                 \
        hk::sm90::gemm<T, true, true, hk::sm90::Config<BN, ST>, true, PROMOTE>(p, a, b, scales); \
    }
#define HK_FP8_MODES(TNAME, T, BN, ST)                \
    HK_FP8_KERNEL(TNAME, T, BN, ST, promoted, true)   \
    HK_FP8_KERNEL(TNAME, T, BN, ST, fastacc, false)
#define HK_TILE(BM_, BN, BK_, ST, MINB)                                                      \
    static_assert(BM_ == hk::sm90::BM && BK_ == hk::sm90::k_elems<hk::Fp8E4M3>() && MINB == 1, \
                  "the kernel's block tile is 128 x BN x 128 FP8 elements, one block per SM"); \
    HK_FP8_MODES(e4m3, hk::Fp8E4M3, BN, ST)                                                  \
    HK_FP8_MODES(e5m2, hk::Fp8E5M2, BN, ST)
#include "hikube_tiles.inc"
