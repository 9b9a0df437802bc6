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

}  // namespace hk
