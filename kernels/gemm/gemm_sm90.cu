// hikube-archs: compute_90a
//
// GEMM for Hopper (H100, H200), f16 and bf16, every layout: the body is gemm/sm90_gemm.cuh.
//
// One kernel body, a Config per tile of kernels/tiles.toml's [gemm_sm90]: wide tiles, and narrow
// ones with more stages for shapes with few output tiles and a long K (M of one tile), which
// they cut into more tiles.
#include "gemm/sm90_gemm.cuh"

// Per tile of kernels/tiles.toml's [gemm_sm90], type and layout:
// gemm_sm90_<t>_128x<BN>x64x<STAGES>_<ar|ac><br|bc>_persistent.
#define HK_SM90_KERNEL(TNAME, T, LAYOUT, AK, BK_, BN, ST)                                        \
    extern "C" __global__ void __launch_bounds__(hk::sm90::THREADS, 1)                           \
        gemm_sm90_##TNAME##_128x##BN##x64x##ST##_##LAYOUT##_persistent(                          \
            hk::GemmParams p, const __grid_constant__ hk::sm90::TmaDesc a,                       \
            const __grid_constant__ hk::sm90::TmaDesc b) {                                       \
        hk::sm90::gemm<T, AK, BK_, hk::sm90::Config<BN, ST>, false>(p, a, b, {});                \
    }
#define HK_SM90_LAYOUTS(TNAME, T, BN, ST)              \
    HK_SM90_KERNEL(TNAME, T, arbc, true, true, BN, ST)  \
    HK_SM90_KERNEL(TNAME, T, arbr, true, false, BN, ST) \
    HK_SM90_KERNEL(TNAME, T, acbc, false, true, BN, ST) \
    HK_SM90_KERNEL(TNAME, T, acbr, false, false, BN, ST)
#define HK_TILE(BM_, BN, BK_, ST, MINB)                                                    \
    static_assert(BM_ == hk::sm90::BM && BK_ == hk::sm90::BK && MINB == 1,                 \
                  "the kernel's block tile is 128 x BN x 64, one block per SM");           \
    HK_SM90_LAYOUTS(f16, __half, BN, ST)                                                   \
    HK_SM90_LAYOUTS(bf16, __nv_bfloat16, BN, ST)
#include "hikube_tiles.inc"
