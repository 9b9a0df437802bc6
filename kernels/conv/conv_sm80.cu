// hikube-archs: compute_80
//
// Implicit-GEMM convolution forward for compute capability 8.0 and newer without wgmma (A100,
// RTX 30/40, L4, L40S; the H100 until its own path takes a shape): implicit_gemm.cuh with
// cp.async (zero-fill for padding and edges), ldmatrix and mma.sync m16n8k16, f16 and bf16,
// f32 accumulation. Tiles (BM output pixels x BN output channels x BK, stages; warp tile):
// kernels/tiles.toml's [conv_sm80], each also as a 4-channel gather (_c4) but for those marked.
// Needs C % 8 == 0 and 16-byte aligned input and filter; the _c4 kernels C % 4 == 0, an 8-byte
// aligned input and filter rows of a multiple of 8 elements (src/ops/conv2d pads otherwise).
#include "conv/implicit_gemm.cuh"

#define HK_TILE(BM, BN, BK, ST, WM, WN, MINB)                                           \
    HK_CONV_KERNEL(sm80, Sm80, f16, __half, , 8, BM, BN, BK, WM, WN, ST, MINB)          \
    HK_CONV_KERNEL(sm80, Sm80, bf16, __nv_bfloat16, , 8, BM, BN, BK, WM, WN, ST, MINB)
// The 4-channel gather: C = 3 padded to 4 (a network's first layer), or any C % 4 == 0.
#define HK_TILE_C4(BM, BN, BK, ST, WM, WN, MINB)                                        \
    HK_CONV_KERNEL(sm80, Sm80, f16, __half, _c4, 4, BM, BN, BK, WM, WN, ST, MINB)       \
    HK_CONV_KERNEL(sm80, Sm80, bf16, __nv_bfloat16, _c4, 4, BM, BN, BK, WM, WN, ST, MINB)
#include "hikube_tiles.inc"
