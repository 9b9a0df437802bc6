// hikube-archs: compute_80
//
// Implicit-GEMM convolution forward for compute capability 8.0 and newer without wgmma (A100,
// RTX 30/40, L4, L40S; the H100 until its own path takes a shape): implicit_gemm.cuh with
// cp.async (zero-fill for padding and edges), ldmatrix and mma.sync m16n8k16, f16 and bf16,
// f32 accumulation. Tiles (BM output pixels x BN output channels x BK, stages; warp tile):
//   128x256x32x3 (8 warps of 64x64)   128x128x32x4, 128x128x64x3 (4 warps of 64x64; not _c4)
//   256x64x32x4  (8 warps of 64x32)   128x64x32x4, 128x64x64x3 (4 warps of 64x32; the latter
//   not _c4)   64x64x32x4 (4 warps of 32x32)
// Needs C % 8 == 0 and 16-byte aligned input and filter; the _c4 kernels C % 4 == 0, an 8-byte
// aligned input and filter rows of a multiple of 8 elements (src/ops/conv2d pads otherwise).
#include "conv/implicit_gemm.cuh"

#define HK_CONV_SM80_TILES(TNAME, T, VNAME, VEC)                                    \
    HK_CONV_KERNEL(sm80, Sm80, TNAME, T, VNAME, VEC, 128, 256, 32, 64, 64, 3, 1)   \
    HK_CONV_KERNEL(sm80, Sm80, TNAME, T, VNAME, VEC, 128, 128, 32, 64, 64, 4, 2)   \
    HK_CONV_KERNEL(sm80, Sm80, TNAME, T, VNAME, VEC, 256, 64, 32, 64, 32, 4, 1)    \
    HK_CONV_KERNEL(sm80, Sm80, TNAME, T, VNAME, VEC, 128, 64, 32, 64, 32, 4, 2)    \
    HK_CONV_KERNEL(sm80, Sm80, TNAME, T, VNAME, VEC, 64, 64, 32, 32, 32, 4, 2)

HK_CONV_SM80_TILES(f16, __half, , 8)
HK_CONV_SM80_TILES(bf16, __nv_bfloat16, , 8)
HK_CONV_KERNEL(sm80, Sm80, f16, __half, , 8, 128, 128, 64, 64, 64, 3, 2)
HK_CONV_KERNEL(sm80, Sm80, bf16, __nv_bfloat16, , 8, 128, 128, 64, 64, 64, 3, 2)
HK_CONV_KERNEL(sm80, Sm80, f16, __half, , 8, 128, 64, 64, 64, 32, 3, 2)
HK_CONV_KERNEL(sm80, Sm80, bf16, __nv_bfloat16, , 8, 128, 64, 64, 64, 32, 3, 2)
// The 4-channel gather: C = 3 padded to 4 (a network's first layer), or any C % 4 == 0. No
// BK = 64 tiles: the second tap state per chunk spills 128x128x64x3.
HK_CONV_SM80_TILES(f16, __half, _c4, 4)
HK_CONV_SM80_TILES(bf16, __nv_bfloat16, _c4, 4)
