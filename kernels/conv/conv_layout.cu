// hikube-archs: compute_70 compute_75 compute_80 compute_90a
//
// Layout kernels, type-agnostic (they move 8-, 16- or 32-bit words):
// - transpose_b8/_b16/_b32: batch x rows x cols -> batch x cols x rows through a 32x33 shared tile
//   (coalesced reads and writes, no bank conflicts). NCHW -> NHWC is (N, C, H*W); NHWC -> NCHW
//   is (N, H*W, C); KCRS -> KRSC is (K, C, R*S); KRSC -> KCRS is (K, R*S, C). The FP8 GEMM
//   makes its M-major A and N-major B K-major with transpose_b8: (batch, K, M) and (batch, K, N).
//   Grid: x over cols / 32, y over rows / 32, z strides over the batch. Block 32 x 8.
// - pad_pixels_b16 (input) and pad_rows_b16 (filter: rows of taps x c -> rows of ld = taps x cp,
//   then zeros): the padded path of the implicit-GEMM convolution, zeros in the new channels.
// - flip_filter_b16: a KRSC filter turned into the CRSK filter of its transposed convolution,
//   taps reversed (the data gradient of a stride-1 convolution is the forward convolution of dy
//   by it), or the taps of one phase of a strided convolution's data gradient likewise.
#include <cuda_fp16.h>

namespace hk {

template <typename T>
__device__ __forceinline__ void transpose(const T* src, T* dst, int batch, int rows, int cols) {
    __shared__ T tile[32][33];
    const int c0 = blockIdx.x * 32, r0 = blockIdx.y * 32;
    const long long plane = static_cast<long long>(rows) * cols;
    for (int b = blockIdx.z; b < batch; b += gridDim.z) {
        const T* s = src + b * plane;
        T* d = dst + b * plane;
        for (int j = threadIdx.y; j < 32; j += 8) {
            const int r = r0 + j, c = c0 + threadIdx.x;
            if (r < rows && c < cols) tile[j][threadIdx.x] = s[static_cast<long long>(r) * cols + c];
        }
        __syncthreads();
        for (int j = threadIdx.y; j < 32; j += 8) {
            const int c = c0 + j, r = r0 + threadIdx.x;
            if (r < rows && c < cols) d[static_cast<long long>(c) * rows + r] = tile[threadIdx.x][j];
        }
        __syncthreads();
    }
}

}  // namespace hk

extern "C" __global__ void transpose_b8(const unsigned char* src, unsigned char* dst, int batch,
                                        int rows, int cols) {
    hk::transpose(src, dst, batch, rows, cols);
}
extern "C" __global__ void transpose_b16(const unsigned short* src, unsigned short* dst, int batch,
                                         int rows, int cols) {
    hk::transpose(src, dst, batch, rows, cols);
}
extern "C" __global__ void transpose_b32(const unsigned* src, unsigned* dst, int batch, int rows,
                                         int cols) {
    hk::transpose(src, dst, batch, rows, cols);
}

// dst[row][j] = src[row][j] for j < c, 0 for c <= j < cp: one thread per row (pixel) of the
// padded input, 32-bit indices (the host bounds rows * cp below 2^31).
extern "C" __global__ void pad_pixels_b16(const unsigned short* src, unsigned short* dst, int rows,
                                          int c, int cp) {
    for (int row = blockIdx.x * blockDim.x + threadIdx.x; row < rows; row += gridDim.x * blockDim.x) {
        const unsigned short* s = src + row * c;
        unsigned short* d = dst + row * cp;
        for (int j = 0; j < cp; ++j) d[j] = j < c ? s[j] : static_cast<unsigned short>(0);
    }
}

// dst[row][j] for j < ld: tap t = j / cp, channel ci = j % cp of src[row][t][ci] (rows of taps x c
// elements) where t < taps and ci < c, zero elsewhere. The input (taps = 1, ld = cp) and the
// filter (taps = R*S, ld = R*S*cp rounded up to 8) of the padded path.
extern "C" __global__ void pad_rows_b16(const unsigned short* src, unsigned short* dst,
                                        long long rows, int taps, int c, int cp, int ld) {
    const long long total = rows * ld;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
        const long long row = i / ld;
        const int j = static_cast<int>(i - row * ld);
        const int t = j / cp, ci = j - t * cp;
        dst[i] = t < taps && ci < c ? src[(row * taps + t) * c + ci] : static_cast<unsigned short>(0);
    }
}

// Which taps flip_filter_b16 reads: destination tap t' = (jh, jw) of taps_h x taps_w is source
// tap (r0 + (taps_h - 1 - jh) * tr, s0 + (taps_w - 1 - jw) * ts) of a filter with src_s taps a
// row and src_taps in all. The whole filter reversed: taps_h x taps_w = R x S, r0 = s0 = 0,
// tr = ts = 1. Mirrored by `FlipTaps` in src/launch/args.rs.
struct FlipTaps {
    int taps_h, taps_w, r0, s0, tr, ts, src_s, src_taps;
};

// dst[c][t'][k] = src[k][tap(t')][c] for k < K, t' < taps_h * taps_w, c < C: for each tap, a
// K x C -> C x K transpose through a 32x33 shared tile (coalesced reads along c, writes along k).
// Grid: x over C / 32, y over K / 32, z strides over the destination taps. Block 32 x 8.
extern "C" __global__ void flip_filter_b16(const unsigned short* src, unsigned short* dst, int k,
                                           int c, FlipTaps f) {
    __shared__ unsigned short tile[32][33];
    const int c0 = blockIdx.x * 32, k0 = blockIdx.y * 32;
    const int taps = f.taps_h * f.taps_w;
    for (int t = blockIdx.z; t < taps; t += gridDim.z) {
        const int jh = t / f.taps_w, jw = t - jh * f.taps_w;
        const int st = (f.r0 + (f.taps_h - 1 - jh) * f.tr) * f.src_s + f.s0 +
                       (f.taps_w - 1 - jw) * f.ts;
        for (int j = threadIdx.y; j < 32; j += 8) {
            const int kk = k0 + j, cc = c0 + threadIdx.x;
            if (kk < k && cc < c)
                tile[j][threadIdx.x] = src[(static_cast<long long>(kk) * f.src_taps + st) * c + cc];
        }
        __syncthreads();
        for (int j = threadIdx.y; j < 32; j += 8) {
            const int cc = c0 + j, kk = k0 + threadIdx.x;
            if (kk < k && cc < c)
                dst[(static_cast<long long>(cc) * taps + t) * k + kk] = tile[threadIdx.x][j];
        }
        __syncthreads();
    }
}
