// hikube-archs: compute_80
//
// GEMM for compute capability 8.0 and newer without wgmma: A100, RTX 30/40, L4, L40S (and the
// H100 when this path is forced). mma.sync m16n8k16 (f16, bf16) + ldmatrix + cp.async, with
// a multi-stage shared-memory pipeline; see mma_pipeline.cuh. Tile configurations:
//   128x256x32, 8 warps of 64x64, 3 stages (large problems)
//   128x128x32, 4 warps of 64x64, 4 stages (medium)
//    64x64x32,  4 warps of 32x32, 4 stages (small; also the general, unaligned path)
// Aligned kernels need 16-byte aligned A and B and lda, ldb multiples of 8 elements.
// Every tile exists for f16 and bf16 with f32 accumulators, and for f16 with f16 accumulators
// (f16_acc16: ComputeType::F16, twice the tensor rate on GeForce cards).
#include "gemm/mma_pipeline.cuh"

#define HK_SM80_TYPE(TNAME, T, ACC16)                                                       \
    HK_GEMM_LAYOUTS(sm80, Sm80, TNAME, T, ACC16, 128, 256, 32, 64, 64, 3, 1, aligned, true)     \
    HK_GEMM_LAYOUTS(sm80, Sm80, TNAME, T, ACC16, 128, 256, 32, 64, 64, 4, 1, aligned, true)     \
    HK_GEMM_LAYOUTS(sm80, Sm80, TNAME, T, ACC16, 128, 256, 64, 64, 64, 3, 1, aligned, true)     \
    HK_GEMM_LAYOUTS(sm80, Sm80, TNAME, T, ACC16, 128, 128, 64, 64, 64, 3, 2, aligned, true)     \
    HK_GEMM_LAYOUTS(sm80, Sm80, TNAME, T, ACC16, 128, 128, 32, 64, 64, 4, 2, aligned, true)     \
    HK_GEMM_LAYOUTS(sm80, Sm80, TNAME, T, ACC16, 64, 64, 32, 32, 32, 4, 2, aligned, true)       \
    HK_GEMM_LAYOUTS(sm80, Sm80, TNAME, T, ACC16, 64, 64, 32, 32, 32, 4, 2, general, false)

HK_SM80_TYPE(f16, __half, false)
HK_SM80_TYPE(bf16, __nv_bfloat16, false)
HK_SM80_TYPE(f16_acc16, __half, true)

extern "C" __global__ void gemm_sm80_splitk_reduce(hk::GemmParams p) { hk::splitk_reduce(p); }
