// hikube-archs: compute_75
//
// GEMM for compute capability 7.5 (Tesla T4, RTX 20): the main loop of mma_pipeline.cuh with
// two mma.sync m16n8k8 per k16 step and ldmatrix, fed by plain 16-byte loads into a
// double-buffered shared-memory tile (cp.async needs 8.0). f16 only: BF16 tensor cores need 8.0.
// Tiles: 128x128x32 (4 warps of 64x64) and 64x64x32 (4 warps of 32x32, also the general path),
// each with f32 accumulators (f16) and f16 ones (f16_acc16: ComputeType::F16).
#include "gemm/mma_pipeline.cuh"

#define HK_SM75_ACC(TNAME, ACC16)                                                              \
    HK_GEMM_LAYOUTS(sm75, Sm75, TNAME, __half, ACC16, 128, 128, 32, 64, 64, 2, 2, aligned, true) \
    HK_GEMM_LAYOUTS(sm75, Sm75, TNAME, __half, ACC16, 64, 64, 32, 32, 32, 2, 2, aligned, true)   \
    HK_GEMM_LAYOUTS(sm75, Sm75, TNAME, __half, ACC16, 64, 64, 32, 32, 32, 2, 2, general, false)

HK_SM75_ACC(f16, false)
HK_SM75_ACC(f16_acc16, true)

extern "C" __global__ void gemm_sm75_splitk_reduce(hk::GemmParams p) { hk::splitk_reduce(p); }
