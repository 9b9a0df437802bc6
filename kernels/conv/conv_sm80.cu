// hikube-archs: compute_80
//
// Implicit-GEMM convolution forward for compute capability 8.0 and newer without wgmma (A100,
// RTX 30/40, L4, L40S; the H100 until its own path takes a shape): implicit_gemm.cuh with
// cp.async (zero-fill for padding and edges), ldmatrix and mma.sync m16n8k16, f16 and bf16,
// f32 accumulation. Tiles (BM output pixels x BN output channels x BK, stages; warp tile):
//   128x256x32x3 (8 warps of 64x64)   128x128x32x4, 128x128x64x3 (4 warps of 64x64)
//   256x64x32x4  (8 warps of 64x32)   128x64x32x4 (4 warps of 64x32)   64x64x32x4 (4 of 32x32)
// Needs C % 8 == 0 and 16-byte aligned input and filter (src/ops/conv2d pads C otherwise).
#include "conv/implicit_gemm.cuh"

#define HK_CONV_SM80_TYPE(TNAME, T)                                    \
    HK_CONV_KERNEL(sm80, Sm80, TNAME, T, 128, 256, 32, 64, 64, 3, 1)   \
    HK_CONV_KERNEL(sm80, Sm80, TNAME, T, 128, 128, 32, 64, 64, 4, 2)   \
    HK_CONV_KERNEL(sm80, Sm80, TNAME, T, 128, 128, 64, 64, 64, 3, 2)   \
    HK_CONV_KERNEL(sm80, Sm80, TNAME, T, 256, 64, 32, 64, 32, 4, 1)    \
    HK_CONV_KERNEL(sm80, Sm80, TNAME, T, 128, 64, 32, 64, 32, 4, 2)    \
    HK_CONV_KERNEL(sm80, Sm80, TNAME, T, 64, 64, 32, 32, 32, 4, 2)

HK_CONV_SM80_TYPE(f16, __half)
HK_CONV_SM80_TYPE(bf16, __nv_bfloat16)
