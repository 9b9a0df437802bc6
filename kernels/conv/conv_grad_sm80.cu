// hikube-archs: compute_80
//
// Implicit-GEMM convolution backward for compute capability 8.0 and newer (A100, RTX 30/40, L4,
// L40S, and H100/H200): the data gradient (dgrad) and the filter gradient (wgrad) of
// implicit_grad.cuh, cp.async + ldmatrix + mma.sync m16n8k16, f16 and bf16, f32 accumulation.
// Tiles: kernels/tiles.toml's [conv_grad_sm80]. Needs groups == 1, C and K multiples of 8 and
// 16-byte aligned x, w and dy (src/ops/conv2d/grad.rs takes the direct kernels otherwise).
#include "conv/implicit_grad.cuh"

#define HK_TILE(BM, BN, BK, ST, WM, WN, MINB)                                             \
    HK_CONV_GRAD_KERNEL(dgrad, sm80, Sm80, f16, __half, BM, BN, BK, WM, WN, ST, MINB)         \
    HK_CONV_GRAD_KERNEL(dgrad, sm80, Sm80, bf16, __nv_bfloat16, BM, BN, BK, WM, WN, ST, MINB) \
    HK_CONV_GRAD_KERNEL(wgrad, sm80, Sm80, f16, __half, BM, BN, BK, WM, WN, ST, MINB)         \
    HK_CONV_GRAD_KERNEL(wgrad, sm80, Sm80, bf16, __nv_bfloat16, BM, BN, BK, WM, WN, ST, MINB)
#include "hikube_tiles.inc"
