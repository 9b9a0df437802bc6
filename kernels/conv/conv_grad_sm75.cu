// hikube-archs: compute_75
//
// Implicit-GEMM convolution backward for compute capability 7.5 (T4, RTX 20): implicit_grad.cuh
// with synchronous 16-byte loads into two shared-memory stages, ldmatrix and two mma.sync
// m16n8k8 per k16 step, f16 only, f32 accumulation. Tiles: kernels/tiles.toml's
// [conv_grad_sm75]. Needs groups == 1, C and K multiples of 8 and 16-byte aligned x, w and dy
// (src/ops/conv2d/grad.rs takes the direct kernels otherwise).
#include "conv/implicit_grad.cuh"

#define HK_TILE(BM, BN, BK, ST, WM, WN, MINB)                                     \
    HK_CONV_GRAD_KERNEL(dgrad, sm75, Sm75, f16, __half, BM, BN, BK, WM, WN, ST, MINB) \
    HK_CONV_GRAD_KERNEL(wgrad, sm75, Sm75, f16, __half, BM, BN, BK, WM, WN, ST, MINB)
#include "hikube_tiles.inc"
