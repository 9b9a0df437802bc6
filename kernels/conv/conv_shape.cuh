// The shape of a 2-D convolution, as every conv kernel takes it (beside a GemmParams that holds
// the operands, the implicit GEMM's M, N, K and the epilogue).
//
//   input  x: N x H x W x C (NHWC), C as stored (rounded up to 8 on the padded path)
//   filter w: K x R x S x (C / groups) (KRSC)
//   output y: N x P x Q x K (NHWC), i.e. the GEMM's D: (N*P*Q) x K row-major
//
// The layout of this struct is mirrored by `ConvShape` in src/ops/conv2d/params.rs.
#pragma once

namespace hk {

struct ConvShape {
    int n, h, w, c;
    int k, r, s;
    int p, q;
    int stride_h, stride_w;
    int pad_h, pad_w;
    int dil_h, dil_w;
    int groups;
};

// One phase of the data gradient (kernels/conv/implicit_grad.cuh): the input pixels
// (h0 + i·stride_h, w0 + j·stride_w), i < rows, j < cols, whose (h + pad_h) and (w + pad_w) leave
// the same remainders by the strides, and the filter taps (r0 + t·tr, s0 + u·ts), t < taps_h,
// u < taps_w, that carry them to output pixels: tap (t, u) carries pixel (i, j) to
// (pbase + i − t·dp, qbase + j − u·dq) (exact, no division). The whole input and filter are one
// phase for stride 1. Mirrored by `DgradPhase` in src/launch/conv.rs.
struct DgradPhase {
    int h0, w0, rows, cols;
    int r0, s0, tr, ts, taps_h, taps_w;
    int pbase, qbase, dp, dq;
};

// The phases of one data-gradient launch, blockIdx.z picking a block's (a strided convolution
// has stride_h·stride_w of them; the host launches them MAX_PHASES at a time). Mirrored by
// `DgradPhases` in src/launch/conv.rs.
constexpr int MAX_PHASES = 16;
struct DgradPhases {
    DgradPhase ph[MAX_PHASES];
};

}  // namespace hk
