// hikube-archs: compute_75
//
// Implicit-GEMM convolution forward for compute capability 7.5 (T4, RTX 20): the main loop of
// implicit_gemm.cuh with synchronous 16-byte loads into two shared-memory stages (cp.async needs
// 8.0), ldmatrix and two mma.sync m16n8k8 per k16 step. f16 only (BF16 tensor cores need 8.0).
// Tiles: kernels/tiles.toml's [conv_sm75]. Needs C % 8 == 0 and 16-byte aligned input and filter
// (src/ops/conv2d pads C otherwise).
#include "conv/implicit_gemm.cuh"

#define HK_TILE(BM, BN, BK, ST, WM, WN, MINB) \
    HK_CONV_KERNEL(sm75, Sm75, f16, __half, , 8, BM, BN, BK, WM, WN, ST, MINB)
#include "hikube_tiles.inc"
