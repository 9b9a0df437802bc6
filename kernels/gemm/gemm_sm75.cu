// hikube-archs: compute_75
//
// GEMM for compute capability 7.5 (Tesla T4, RTX 20): the main loop of mma_pipeline.cuh with
// two mma.sync m16n8k8 per k16 step and ldmatrix, fed by plain 16-byte loads into a
// double-buffered shared-memory tile (cp.async needs 8.0). f16 only: BF16 tensor cores need 8.0.
// Tiles: kernels/tiles.toml's [gemm_sm75] (the last also the general path), each with f32
// accumulators (f16) and f16 ones (f16_acc16: ComputeType::F16).
#include "gemm/mma_pipeline.cuh"

#define HK_SM75_TYPES(BM, BN, BK, ST, WM, WN, MINB, ALNAME, AL)                                \
    HK_GEMM_LAYOUTS(sm75, Sm75, f16, __half, false, BM, BN, BK, WM, WN, ST, MINB, ALNAME, AL) \
    HK_GEMM_LAYOUTS(sm75, Sm75, f16_acc16, __half, true, BM, BN, BK, WM, WN, ST, MINB, ALNAME, AL)
#define HK_TILE(BM, BN, BK, ST, WM, WN, MINB) HK_SM75_TYPES(BM, BN, BK, ST, WM, WN, MINB, aligned, true)
#define HK_TILE_GENERAL(BM, BN, BK, ST, WM, WN, MINB) \
    HK_SM75_TYPES(BM, BN, BK, ST, WM, WN, MINB, general, false)
#include "hikube_tiles.inc"

extern "C" __global__ void gemm_sm75_splitk_reduce(hk::GemmParams p) { hk::splitk_reduce(p); }
