// hikube-archs: compute_75
//
// Implicit-GEMM convolution forward for compute capability 7.5 (T4, RTX 20): the main loop of
// implicit_gemm.cuh with synchronous 16-byte loads into two shared-memory stages (cp.async needs
// 8.0), ldmatrix and two mma.sync m16n8k8 per k16 step. f16 only (BF16 tensor cores need 8.0).
// Tiles: 128x128x32 (4 warps of 64x64) and 64x64x32 (4 warps of 32x32). Needs C % 8 == 0 and
// 16-byte aligned input and filter (src/ops/conv2d pads C otherwise).
#include "conv/implicit_gemm.cuh"

HK_CONV_KERNEL(sm75, Sm75, f16, __half, , 8, 128, 128, 32, 64, 64, 2, 2)
HK_CONV_KERNEL(sm75, Sm75, f16, __half, , 8, 64, 64, 32, 32, 32, 2, 2)
