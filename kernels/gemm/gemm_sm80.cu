// hikube-archs: compute_80
//
// GEMM for compute capability 8.0 and newer without wgmma: A100, RTX 30/40, L4, L40S (and the
// H100 when this path is forced). mma.sync m16n8k16 (f16, bf16) + ldmatrix + cp.async, with
// a multi-stage shared-memory pipeline; see mma_pipeline.cuh. The tile configurations are
// kernels/tiles.toml's [gemm_sm80] (its last tile is also the general, unaligned kernel).
// Aligned kernels need 16-byte aligned A and B and lda, ldb multiples of 8 elements.
// Every tile exists for f16 and bf16 with f32 accumulators, and for f16 with f16 accumulators
// (f16_acc16: ComputeType::F16, twice the tensor rate on GeForce cards).
#include "gemm/mma_pipeline.cuh"

#define HK_SM80_TYPES(BM, BN, BK, ST, WM, WN, MINB, ALNAME, AL)                                      \
    HK_GEMM_LAYOUTS(sm80, Sm80, f16, __half, false, BM, BN, BK, WM, WN, ST, MINB, ALNAME, AL)         \
    HK_GEMM_LAYOUTS(sm80, Sm80, bf16, __nv_bfloat16, false, BM, BN, BK, WM, WN, ST, MINB, ALNAME, AL) \
    HK_GEMM_LAYOUTS(sm80, Sm80, f16_acc16, __half, true, BM, BN, BK, WM, WN, ST, MINB, ALNAME, AL)
#define HK_TILE(BM, BN, BK, ST, WM, WN, MINB) HK_SM80_TYPES(BM, BN, BK, ST, WM, WN, MINB, aligned, true)
#define HK_TILE_GENERAL(BM, BN, BK, ST, WM, WN, MINB) \
    HK_SM80_TYPES(BM, BN, BK, ST, WM, WN, MINB, general, false)
#include "hikube_tiles.inc"

extern "C" __global__ void gemm_sm80_splitk_reduce(hk::GemmParams p) { hk::splitk_reduce(p); }
