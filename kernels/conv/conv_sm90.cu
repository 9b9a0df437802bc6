// hikube-archs: compute_90a
//
// 2-D convolution (fprop, NHWC) for Hopper (H100, H200) as an implicit GEMM on wgmma:
//   y[m, k] = act(alpha * sum_{r,s,c} x[n, p*sh - ph + r*dh, q*sw - pw + s*dw, c] * w[k, r, s, c]
//                 + beta * C[m, k] + bias[k])
// with M = N*P*Q output pixels (rows, NPQ order = y's NHWC rows), N_gemm = K output channels,
// K_gemm = R*S*C walked as (r, s, 64-channel slice). The filter, KRSC, is the GEMM's K-major B.
//
// Block tile 128 x BN x 64, warp-specialized like gemm_sm90.cu: warpgroup 0 produces,
// warpgroups 1 and 2 consume 64 x BN each with wgmma.mma_async m64nBNk16 from 128-byte-swizzled
// shared memory, f32 accumulators, one wgmma group kept in flight. Variants (BN x stages):
// 256x4, 128x6, 64x8 with one block per SM (192 KiB of stages, setmaxnreg 40/232), and 64x4
// with two blocks per SM (96 KiB each, 80 registers a thread): the second block's main loop
// hides the first's pipeline fill and epilogue, which dominate short reductions. (128 x 128
// with two blocks does not fit: wgmma m64n128 needs more than 80 registers.)
//
// The A tile (128 output pixels x 64 K_gemm elements) comes one of three ways:
//  - IM2COL: one TMA im2col load (cp.async.bulk.tensor.4d ... .im2col) per stage, 64 channels
//    of one filter tap. The tensor map walks the 128 pixels in NPQ order over a bounding box
//    whose corners come from padding and dilation, with the convolution stride as its traversal
//    stride; (s*dw, r*dh) are the im2col offsets. Padding, image edges and rows past M read as
//    zeros. Needs pad and (R-1)*dh, (S-1)*dw within [-128, 127] and strides <= 8 (the host
//    checks; else GATHER).
//  - GATHER: the same tile, loaded by the 128 producer threads (one output pixel each) with
//    16-byte cp.async (zero-filled outside the image or past C) straight into the swizzled
//    layout; each thread arrives on the stage's barrier with cp.async.mbarrier.arrive.noinc.
//    Any stride, padding, dilation.
//  - PACKED: GATHER over K_gemm = (r, s, c) walked linearly, so a 64-wide slice holds several
//    taps when C < 64 (C = 8: eight taps), instead of one tap padded with zeros.
// The B tile (BN output channels x 64 K_gemm elements) is a TMA tiled load of the filter seen as a
// [K][R*S][C] tensor (PACKED: [K][1][R*S*C]), so elements past C (or R*S*C) read as zeros.
//
// Assumes: C % 8 == 0 (16-byte pixel rows), x and w 16-byte aligned (the host checks). IM2COL and
// GATHER slices hold one tap, so C < 64 wastes the rest of each slice (PACKED does not).
// Persistent when the host launches fewer blocks than tiles: each block walks tiles gridDim.x
// apart and its stage ring runs on across them, so the producer fills the pipeline for the next
// tile while the consumers store this one. The _phases entry points walk the tiles of up to
// four placed convolutions of one input into one output (a strided data gradient's phases, each
// with its own shape, maps and k-tiles) as one sequence.
// Epilogue: straight from the accumulators (the stages are busy with the next tile) through the
// shared one of gemm_params.cuh (alpha, beta * C, bias per output channel, ReLU or GELU, output
// in the input type, paired stores), or f32 split-K partials summed by conv_sm90_splitk_reduce.
#include "gemm/gemm_params.cuh"
#include "gemm/sm90_skeleton.cuh"

namespace hk {
namespace conv90 {
using namespace hk::sm90;

// Mirrored by `ConvParams` in src/ops/conv2d_sm90/mod.rs.
struct ConvParams {
    int n, h, w, c;  // input, NHWC
    int k, r, s;     // filter, KRSC
    int p, q;        // output height and width
    int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
    int c_tiles;       // ceil(C / 64)
    int k_tiles;       // R * S * c_tiles
    int kt_per_split;  // k-tiles per split-K slice
    // Where output pixel (n, p, q) lands: row (n * out_h + out_h0 + p * out_sh) * out_w + out_w0
    // + q * out_sw of an N x out_h x out_w image (a strided data gradient's phase writes every
    // out_sh-th row and out_sw-th column of dx); out_sh == 0: row m of y itself.
    int out_h, out_w, out_h0, out_w0, out_sh, out_sw;
};

// The output row of GEMM row m (< p.m): m itself, or its place in the strided output.
__device__ __forceinline__ int out_row(const ConvParams& cp, int m) {
    if (cp.out_sh == 0) return m;
    const int pq = cp.p * cp.q;
    const int img = m / pq, rem = m - img * pq;
    const int oh = rem / cp.q, ow = rem - oh * cp.q;
    return (img * cp.out_h + cp.out_h0 + oh * cp.out_sh) * cp.out_w + cp.out_w0 + ow * cp.out_sw;
}

constexpr int A_BYTES = BM * BK * 2;

// One tile of a launch's work: its convolution's parameters and maps, that convolution's GEMM
// rows (output pixels) and the tile's index among its tiles.
struct TileSrc {
    const ConvParams* cp;
    const TmaDesc* x;
    const TmaDesc* w;
    int m, tile;
};

// The tiles of a launch of one convolution (m GEMM rows, n output channels).
template <int BN>
struct OneConv {
    const ConvParams& cp;
    const TmaDesc& x;
    const TmaDesc& w;
    int m, n;
    __device__ __forceinline__ int tiles() const {
        return ((m + BM - 1) / BM) * ((n + BN - 1) / BN);
    }
    __device__ __forceinline__ TileSrc at(int tile) const { return {&cp, &x, &w, m, tile}; }
};

// Up to PHASES placed convolutions of one input into one output, each with its own filter (the
// phases of a strided data gradient: dy by each phase's taps into its pixels of dx), launched
// as one sequence of tiles, phase 0's first. Mirrored by `ConvSm90PhaseSet` in
// src/launch/conv.rs.
constexpr int PHASES = 4;
struct PhaseSet {
    TmaDesc x[PHASES];
    TmaDesc w[PHASES];
    ConvParams cp[PHASES];
    int count;  // 1 .. PHASES
};

// The tiles of a PhaseSet's phases (n output channels each).
template <int BN>
struct Phases {
    const PhaseSet& s;
    int n;
    __device__ __forceinline__ int count() const { return min(max(s.count, 1), PHASES); }
    __device__ __forceinline__ int rows(int i) const {
        return s.cp[i].n * s.cp[i].p * s.cp[i].q;
    }
    __device__ __forceinline__ int tiles_of(int i) const {
        return ((rows(i) + BM - 1) / BM) * ((n + BN - 1) / BN);
    }
    __device__ __forceinline__ int tiles() const {
        int t = 0;
        for (int i = 0; i < count(); ++i) t += tiles_of(i);
        return t;
    }
    __device__ __forceinline__ TileSrc at(int tile) const {
        int i = 0;
        for (; i + 1 < count(); ++i) {
            const int t = tiles_of(i);
            if (tile < t) break;
            tile -= t;
        }
        return {&s.cp[i], &s.x[i], &s.w[i], rows(i), tile};
    }
};

// The k-tiles of split-K slice `split` of the convolution `cp`.
__device__ __forceinline__ int split_k_tiles(const ConvParams& cp, int split) {
    const int kt_begin = split * cp.kt_per_split;
    return max(min(cp.k_tiles, kt_begin + cp.kt_per_split) - kt_begin, 0);
}

enum Mode : int { MODE_IM2COL = 0, MODE_GATHER = 1, MODE_PACKED = 2 };

template <int BN, int STAGES_>
struct Tile {
    static constexpr int B_BYTES = BN * BK * 2;
    static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
    static constexpr int STAGES = STAGES_;
    static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES + 1024;
};

// Loads the im2col box at pixel (w, h, n), channel c, shifted by the filter tap (off_w, off_h).
__device__ __forceinline__ void tma_load_im2col(void* dst, const TmaDesc* map, int c, int w, int h,
                                                int n, unsigned short off_w, unsigned short off_h,
                                                unsigned long long* bar) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.im2col.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%2, %3, %4, %5}], [%6], {%7, %8};\n" ::"r"(smem_u32(dst)),
        "l"(reinterpret_cast<unsigned long long>(map)), "r"(c), "r"(w), "r"(h), "r"(n),
        "r"(smem_u32(bar)), "h"(off_w), "h"(off_h)
        : "memory");
}

// 16 bytes global -> shared, the bytes past `src_bytes` (0 or 16) zero-filled.
__device__ __forceinline__ void cp_async_16(unsigned dst, const void* src, unsigned src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}

// Arrives on `bar` once this thread's earlier cp.async copies have landed (counted in the
// barrier's expected arrivals: .noinc).
__device__ __forceinline__ void cp_async_arrive(unsigned long long* bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_u32(bar))
                 : "memory");
}

// The filter tap and channel slice of k-tile kt: kt = (r * S + s) * c_tiles + c_tile.
struct KStep {
    int r, s, rs, c_tile;
    __device__ __forceinline__ KStep(const ConvParams& cp, int kt) {
        c_tile = kt % cp.c_tiles;
        rs = kt / cp.c_tiles;
        r = rs / cp.s;
        s = rs - r * cp.s;
    }
    __device__ __forceinline__ void next(const ConvParams& cp) {
        if (++c_tile == cp.c_tiles) {
            c_tile = 0;
            ++rs;
            if (++s == cp.s) {
                s = 0;
                ++r;
            }
        }
    }
};

// gemm_params.cuh's epilogue for columns c, c + 1 of rows r and r + 8 (where inside M), out of
// line so that the unrolled register epilogue below holds one call per column pair instead of
// BN / 4 inlined copies of it (six times the module's size). The kernels take `p` as a
// __grid_constant__, so the reference reads the parameters in place (no stack copy).
// Rows d0 and d1 are output rows (out_row), negative past M.
__device__ __noinline__ void store_pair_general(const GemmParams& p, int d0, int d1, int c,
                                                float x0, float y0, float x1, float y1) {
    if (d0 >= 0) epilogue2(p, 0, d0, c, x0, y0);
    if (d1 >= 0) epilogue2(p, 0, d1, c, x1, y1);
}

// Stores columns c, c + 1 of GEMM rows r and r + 8 (where inside M; output rows {d0, d1},
// out_row's, negative past M): f32 split-K partials (at the GEMM rows), or the epilogue: bias +
// ReLU in the output type T (gemm_params.cuh's with its types fixed, so that the fully unrolled
// register epilogue stays small), or, with alpha != 1, beta != 0, GELU, the ReLU-backward mask or
// a bias of another type, gemm_params.cuh's own (C in y's type and layout).
template <typename T>
__device__ __forceinline__ void store_pair(const GemmParams& p, int split, int r,
                                           const int (&rows)[2], int c, float x0, float y0,
                                           float x1, float y1) {
    const bool two = c + 1 < p.n;
    if (p.splits > 1) {
        float* ws = p.workspace + static_cast<long long>(split) * p.m * p.n + c;
        if (r < p.m) {
            ws[static_cast<long long>(r) * p.n] = x0;
            if (two) ws[static_cast<long long>(r) * p.n + 1] = y0;
        }
        if (r + 8 < p.m) {
            ws[static_cast<long long>(r + 8) * p.n] = x1;
            if (two) ws[static_cast<long long>(r + 8) * p.n + 1] = y1;
        }
        return;
    }
    if (p.alpha != 1.f || p.beta != 0.f || p.activation == ACT_GELU ||
        p.activation == ACT_RELU_MASK || (p.bias && p.bias_dtype != p.out_dtype)) {
        store_pair_general(p, rows[0], rows[1], c, x0, y0, x1, y1);
        return;
    }
    if (p.bias) {
        const T* bias = static_cast<const T*>(p.bias) + c;
        const float b0 = to_f32(bias[0]), b1 = two ? to_f32(bias[1]) : 0.f;
        x0 += b0;
        x1 += b0;
        y0 += b1;
        y1 += b1;
    }
    if (p.activation == ACT_RELU) {
        x0 = fmaxf(x0, 0.f);
        y0 = fmaxf(y0, 0.f);
        x1 = fmaxf(x1, 0.f);
        y1 = fmaxf(y1, 0.f);
    }
    T* d = static_cast<T*>(p.d) + c;
    const bool pair = two && p.pair_ok;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int rr = rows[h];
        if (rr < 0) continue;
        const float x = h ? x1 : x0, y = h ? y1 : y0;
        T* out = d + static_cast<long long>(rr) * p.ldd;
        if (pair) {
            if constexpr (IsBf16<T>::value) {
                __nv_bfloat162 v;
                v.x = __float2bfloat16_rn(x);
                v.y = __float2bfloat16_rn(y);
                *reinterpret_cast<__nv_bfloat162*>(out) = v;
            } else {
                *reinterpret_cast<__half2*>(out) = __floats2half2_rn(x, y);
            }
        } else {
            store_out(out, IsBf16<T>::value ? OUT_BF16 : OUT_F16, 0, x);
            if (two) store_out(out, IsBf16<T>::value ? OUT_BF16 : OUT_F16, 1, y);
        }
    }
}

// The tiles of `src` (OneConv or Phases, of p.n output channels), each of its convolution's
// parameters and maps.
template <typename T, int BN, int STAGES_, int CTAS, int MODE, typename Src>
__device__ __forceinline__ void conv(const GemmParams& p, const Src& src) {
    constexpr bool IM2COL = MODE == MODE_IM2COL;
    using Cfg = Tile<BN, STAGES_>;
    constexpr int STAGES = Cfg::STAGES, STAGE_BYTES = Cfg::STAGE_BYTES;
    __shared__ __align__(8) unsigned long long full[STAGES];
    __shared__ __align__(8) unsigned long long empty[STAGES];
    const StageRing<STAGES> ring{full, empty};
    unsigned char* smem = swizzle_smem(Cfg::SMEM_BYTES);

    // Persistent when gridDim.x < tiles: block b takes tiles b, b + gridDim.x, ...; the stage
    // ring (k-step counter g) runs on across tiles (and phases), so the producer loads the next
    // tile while the consumers store this one. blockIdx.y is the split-K slice.
    const int num_tiles = src.tiles();
    const int split = blockIdx.y;
    const int wg = warpgroup();

    // GATHER, PACKED: the expect_tx arrival (B) and one cp.async arrival per producer thread.
    ring.init(IM2COL ? 1 : 1 + 128, CONSUMERS);

    if (wg == 0) {
        // One block per SM: the consumers take the producer's registers. Two: 80 each suffice.
        producer_registers<CTAS>();
        if (IM2COL && threadIdx.x != 0) return;
        int g = 0;
        for (int tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
            const TileSrc ts = src.at(tile);
            const ConvParams& cp = *ts.cp;
            const TileCoord tc = tile_coord_at<BM, BN>(ts.m, p, ts.tile, split);
            const int kt_begin = split * cp.kt_per_split, k_tiles = split_k_tiles(cp, split);
            if (IM2COL) {
                // The tile's first output pixel; TMA walks the next 127 in NPQ order.
                const int pq = cp.p * cp.q;
                const int img = tc.m0 / pq, rem = tc.m0 - img * pq;
                const int oh = rem / cp.q, ow = rem - oh * cp.q;
                const int h0 = oh * cp.stride_h - cp.pad_h, w0 = ow * cp.stride_w - cp.pad_w;
                KStep ks(cp, kt_begin);
                for (int kt = 0; kt < k_tiles; ++kt, ++g, ks.next(cp)) {
                    const int st = ring.acquire(g);
                    unsigned char* stage = smem + st * STAGE_BYTES;
                    mbar_expect_tx(&full[st], STAGE_BYTES);
                    tma_load_im2col(stage, ts.x, ks.c_tile * BK, w0, h0, img,
                                    static_cast<unsigned short>(ks.s * cp.dil_w),
                                    static_cast<unsigned short>(ks.r * cp.dil_h), &full[st]);
                    tma_load_3d(stage + A_BYTES, ts.w, ks.c_tile * BK, ks.rs, tc.n0, &full[st]);
                }
            } else {
                // One output pixel (row of A) per producer thread.
                const int row = threadIdx.x;
                const int m = tc.m0 + row;
                const bool row_ok = m < ts.m;
                const int pq = cp.p * cp.q;
                const int img = row_ok ? m / pq : 0, rem = m - img * pq;
                const int oh = row_ok ? rem / cp.q : 0, ow = rem - oh * cp.q;
                const int hb = oh * cp.stride_h - cp.pad_h, wb = ow * cp.stride_w - cp.pad_w;
                const T* x = static_cast<const T*>(p.a);
                const T* ximg = x + static_cast<long long>(img) * cp.h * cp.w * cp.c;
                const int swz = row & 7;
                KStep ks(cp, MODE == MODE_PACKED ? 0 : kt_begin);
                for (int kt = 0; kt < k_tiles; ++kt, ++g, ks.next(cp)) {
                    const int st = ring.acquire(g);
                    unsigned char* stage = smem + st * STAGE_BYTES;
                    const unsigned dst = smem_u32(stage) + row * 128;
                    if (MODE == MODE_PACKED) {
                        // K_gemm walked linearly, (r, s, c) packed: a 16-byte chunk (8 channels)
                        // never straddles two taps as C % 8 == 0.
                        const int k0 = (kt_begin + kt) * BK;
                        if (row == 0) {
                            mbar_expect_tx(&full[st], Cfg::B_BYTES);
                            tma_load_3d(stage + A_BYTES, ts.w, k0, 0, tc.n0, &full[st]);
                        }
#pragma unroll
                        for (int j = 0; j < 8; ++j) {
                            const int kg = k0 + 8 * j;
                            const int tap = kg / cp.c, c = kg - tap * cp.c;
                            const int r = tap / cp.s, t = tap - r * cp.s;
                            const int ih = hb + r * cp.dil_h, iw = wb + t * cp.dil_w;
                            const bool in = row_ok && tap < cp.r * cp.s && ih >= 0 && ih < cp.h &&
                                            iw >= 0 && iw < cp.w;
                            const T* src =
                                ximg + (static_cast<long long>(ih) * cp.w + iw) * cp.c + c;
                            cp_async_16(dst + ((j ^ swz) << 4), in ? src : x, in ? 16 : 0);
                        }
                    } else {
                        if (row == 0) {
                            mbar_expect_tx(&full[st], Cfg::B_BYTES);
                            tma_load_3d(stage + A_BYTES, ts.w, ks.c_tile * BK, ks.rs, tc.n0,
                                        &full[st]);
                        }
                        const int ih = hb + ks.r * cp.dil_h, iw = wb + ks.s * cp.dil_w;
                        const bool ok = row_ok && ih >= 0 && ih < cp.h && iw >= 0 && iw < cp.w;
                        const int c0 = ks.c_tile * BK;
                        const T* src = ximg + (static_cast<long long>(ih) * cp.w + iw) * cp.c + c0;
#pragma unroll
                        for (int j = 0; j < 8; ++j) {
                            const bool in = ok && c0 + 8 * j < cp.c;
                            cp_async_16(dst + ((j ^ swz) << 4), in ? src + 8 * j : x,
                                        in ? 16 : 0);
                        }
                    }
                    cp_async_arrive(&full[st]);
                }
            }
        }
        return;
    }

    consumer_registers<CTAS>();
    const int cw = wg - 1;  // consumer warpgroup: rows 64 cw .. 64 cw + 63 of the tile
    const int t = threadIdx.x % 128, warp = t / 32, lane = t % 32;
    int g = 0;
    for (int tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
        const TileSrc ts = src.at(tile);
        const ConvParams& cp = *ts.cp;
        const TileCoord tc = tile_coord_at<BM, BN>(ts.m, p, ts.tile, split);
        const int k_tiles = split_k_tiles(cp, split);
        // GATHER, PACKED: cp.async wrote A through the generic proxy, which wgmma (async proxy)
        // must see: the fence.
        float acc[BN / 2];
        consume_stages<T, true, true, BN, !IM2COL>(acc, ring, g, k_tiles, smem, STAGE_BYTES,
                                                   cw * 8192, A_BYTES,
                                                   [&](int s) { mbar_arrive(&empty[s]); });

        // Store straight from the accumulators (the stages hold the next tile's operands):
        // warp w of consumer cw has rows 16 w + lane / 4 (+ 8) of its 64, and register
        // 4 j + {0, 1} (+ {2, 3} for the row 8 below) holds columns 8 j + 2 (lane % 4) + {0, 1}.
        const int row = tc.m0 + cw * 64 + warp * 16 + lane / 4;
        const int d[2] = {row < ts.m ? out_row(cp, row) : -1,
                          row + 8 < ts.m ? out_row(cp, row + 8) : -1};
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
            const int c = tc.n0 + 8 * j + 2 * (lane % 4);
            if (c < p.n)
                store_pair<T>(p, split, row, d, c, acc[4 * j], acc[4 * j + 1], acc[4 * j + 2],
                              acc[4 * j + 3]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The filter gradient (wgrad) on the same skeleton:
//   dw[k, (r, s, c)] = alpha * sum_{n,p,q} dy[n, p, q, k] * x[n, p*sh - ph + r*dh, q*sw - pw + s*dw, c]
// computed transposed, as D' = im2col(x)^T * dy: M' = R*S*C rows (a tap's channels), N' = K
// columns (output channels), the reduction over the N*P*Q output pixels in 64-pixel k-steps
// (the same pixel order in both operands). A' is two im2col boxes of 64 pixels x 64 channels of
// one tap each (C % 64 == 0, so a 64-row half of the tile never straddles taps), B' is BN / 64
// tiled boxes of dy, 64 pixels x 64 output channels: both MN-major (channels contiguous), which
// wgmma reads transposed. Pixels past N*P*Q read as zeros in dy; rows past R*S*C load some
// tap's channels and are not stored. Split-K (blockIdx.y) cuts the pixels; the output, K x R*S*C
// row-major (p.m = K, p.n = R*S*C), is stored transposed from the accumulators, or as f32
// partials that conv_sm90_splitk_reduce sums.

// Stores rows r, r + 8 (filter elements (r, s, c)) x columns c, c + 1 (output channels) of D'
// where inside, at dw's (c, r): f32 partials of split-K slice `split`, or alpha * D' in dw's type
// (the host passes no beta, bias or activation; gemm_params.cuh's epilogue serves any other).
// Out of line like store_pair_general: one call per column pair of the unrolled epilogue.
__device__ __noinline__ void store_wgrad(const GemmParams& p, int split, int r, int c, float x0,
                                         float y0, float x1, float y1) {
    const float v[4] = {x0, y0, x1, y1};
    const bool plain = p.beta == 0.f && !p.bias && p.activation == ACT_NONE;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int rr = r + 8 * (i / 2), cc = c + i % 2;
        if (rr >= p.n || cc >= p.m) continue;
        if (p.splits > 1) {
            p.workspace[workspace_index(p, split, 0, cc, rr)] = v[i];
        } else if (!plain) {
            epilogue1(p, 0, cc, rr, v[i]);
        } else {
            store_out(p.d, p.out_dtype, cc * p.ldd + rr, p.alpha * v[i]);
        }
    }
}

template <typename T, int BN, int STAGES_>
__device__ __forceinline__ void wgrad(const GemmParams& p, const ConvParams& cp,
                                      const TmaDesc& map_x, const TmaDesc& map_dy) {
    using Cfg = Tile<BN, STAGES_>;
    constexpr int STAGES = Cfg::STAGES, STAGE_BYTES = Cfg::STAGE_BYTES;
    __shared__ __align__(8) unsigned long long full[STAGES];
    __shared__ __align__(8) unsigned long long empty[STAGES];
    const StageRing<STAGES> ring{full, empty};
    unsigned char* smem = swizzle_smem(Cfg::SMEM_BYTES);

    const int rows = p.n;  // R*S*C
    const int tiles_n = (p.m + BN - 1) / BN;
    const int num_tiles = ((rows + BM - 1) / BM) * tiles_n;
    const int split = blockIdx.y;
    const int kt_begin = split * cp.kt_per_split;
    const int k_tiles = split_k_tiles(cp, split);
    const int wg = warpgroup();
    ring.init(1, CONSUMERS);

    if (wg == 0) {
        producer_registers<1>();
        if (threadIdx.x != 0) return;
        const int pq = cp.p * cp.q;
        int g = 0;
        for (int tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
            const int m0 = (tile / tiles_n) * BM, n0 = (tile % tiles_n) * BN;
            // Each 64-row half's tap (im2col offsets) and channel; a half past R*S*C takes the
            // last one (its rows are not stored).
            unsigned short off_w[2], off_h[2];
            int ch[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const int row = min(m0 + 64 * i, rows - 64);
                const int tap = row / cp.c, r = tap / cp.s;
                ch[i] = row - tap * cp.c;
                off_w[i] = static_cast<unsigned short>((tap - r * cp.s) * cp.dil_w);
                off_h[i] = static_cast<unsigned short>(r * cp.dil_h);
            }
            // The k-step's first pixel, decoded once and advanced by 64 pixels per step.
            int pix = (kt_begin)*BK;
            int img = pix / pq, rem = pix - img * pq;
            int oh = rem / cp.q, ow = rem - oh * cp.q;
            for (int kt = 0; kt < k_tiles; ++kt, ++g) {
                const int st = ring.acquire(g);
                unsigned char* stage = smem + st * STAGE_BYTES;
                mbar_expect_tx(&full[st], STAGE_BYTES);
                const int h0 = oh * cp.stride_h - cp.pad_h, w0 = ow * cp.stride_w - cp.pad_w;
#pragma unroll
                for (int i = 0; i < 2; ++i)
                    tma_load_im2col(stage + i * 8192, &map_x, ch[i], w0, h0, img, off_w[i],
                                    off_h[i], &full[st]);
#pragma unroll
                for (int j = 0; j < BN / 64; ++j)
                    tma_load_3d(stage + A_BYTES + j * 8192, &map_dy, n0 + 64 * j, pix, 0,
                                &full[st]);
                pix += BK;
                ow += BK;
                while (ow >= cp.q) {
                    ow -= cp.q;
                    if (++oh == cp.p) {
                        oh = 0;
                        ++img;
                    }
                }
            }
        }
        return;
    }

    consumer_registers<1>();
    const int cw = wg - 1;  // consumer warpgroup: rows 64 cw .. 64 cw + 63 of the tile
    const int t = threadIdx.x % 128, warp = t / 32, lane = t % 32;
    int g = 0;
    for (int tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
        const int m0 = (tile / tiles_n) * BM, n0 = (tile % tiles_n) * BN;
        float acc[BN / 2];
        consume_stages<T, false, false, BN, false>(acc, ring, g, k_tiles, smem, STAGE_BYTES,
                                                   cw * 8192, A_BYTES,
                                                   [&](int s) { mbar_arrive(&empty[s]); });
        // As conv's epilogue: warp w of consumer cw has rows 16 w + lane / 4 (+ 8) of its 64,
        // register 4 j + {0, 1} (+ {2, 3}) columns 8 j + 2 (lane % 4) + {0, 1}.
        const int row = m0 + cw * 64 + warp * 16 + lane / 4;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
            const int c = n0 + 8 * j + 2 * (lane % 4);
            store_wgrad(p, split, row, c, acc[4 * j], acc[4 * j + 1], acc[4 * j + 2],
                        acc[4 * j + 3]);
        }
    }
}

}  // namespace conv90
}  // namespace hk

// Per tile of kernels/tiles.toml's [conv_sm90] and type:
// conv_sm90_<t>_128x<BN>x64x<STAGES>_<im2col|gather|packed>, with the suffix _2cta for the
// variant compiled for two blocks per SM (96 KiB of stages, 80 registers a thread, no setmaxnreg).
#define HK_CONV90(TNAME, T, BN, ST, CTAS, SUFFIX, MODE_NAME, MODE)                                \
    extern "C" __global__ void __launch_bounds__(hk::conv90::THREADS, CTAS)                      \
        conv_sm90_##TNAME##_128x##BN##x64x##ST##_##MODE_NAME##SUFFIX(                            \
            const __grid_constant__ hk::GemmParams p, hk::conv90::ConvParams cp,                 \
            const __grid_constant__ hk::sm90::TmaDesc x,                                         \
            const __grid_constant__ hk::sm90::TmaDesc w) {                                       \
        hk::conv90::conv<T, BN, ST, CTAS, hk::conv90::MODE>(                                     \
            p, hk::conv90::OneConv<BN>{cp, x, w, p.m, p.n});                                     \
    }
// A strided data gradient's phases in one launch (TMA im2col loads only):
// conv_sm90_<t>_128x<BN>x64x<STAGES>_im2col[_2cta]_phases.
#define HK_CONV90_PHASES(TNAME, T, BN, ST, CTAS, SUFFIX, MODE_NAME, MODE)                         \
    extern "C" __global__ void __launch_bounds__(hk::conv90::THREADS, CTAS)                      \
        conv_sm90_##TNAME##_128x##BN##x64x##ST##_##MODE_NAME##SUFFIX##_phases(                   \
            const __grid_constant__ hk::GemmParams p,                                            \
            const __grid_constant__ hk::conv90::PhaseSet s) {                                    \
        hk::conv90::conv<T, BN, ST, CTAS, hk::conv90::MODE>(p, hk::conv90::Phases<BN>{s, p.n}); \
    }
#define HK_CONV90_MODES(TNAME, T, BN, ST, CTAS, SUFFIX)                   \
    HK_CONV90(TNAME, T, BN, ST, CTAS, SUFFIX, im2col, MODE_IM2COL)        \
    HK_CONV90(TNAME, T, BN, ST, CTAS, SUFFIX, gather, MODE_GATHER)        \
    HK_CONV90(TNAME, T, BN, ST, CTAS, SUFFIX, packed, MODE_PACKED)        \
    HK_CONV90_PHASES(TNAME, T, BN, ST, CTAS, SUFFIX, im2col, MODE_IM2COL)
#define HK_CONV90_TYPES(BN, ST, CTAS, SUFFIX)                   \
    HK_CONV90_MODES(f16, __half, BN, ST, CTAS, SUFFIX)          \
    HK_CONV90_MODES(bf16, __nv_bfloat16, BN, ST, CTAS, SUFFIX)
// One block per SM names no suffix; two name _2cta.
#define HK_CTAS_SUFFIX_1
#define HK_CTAS_SUFFIX_2 _2cta
// The filter gradient, per one-block-per-SM tile and type: conv_wgrad_sm90_<t>_128x<BN>x64x<ST>.
#define HK_WGRAD90(TNAME, T, BN, ST)                                                              \
    extern "C" __global__ void __launch_bounds__(hk::conv90::THREADS, 1)                         \
        conv_wgrad_sm90_##TNAME##_128x##BN##x64x##ST(                                            \
            const __grid_constant__ hk::GemmParams p, hk::conv90::ConvParams cp,                 \
            const __grid_constant__ hk::sm90::TmaDesc x,                                         \
            const __grid_constant__ hk::sm90::TmaDesc dy) {                                      \
        hk::conv90::wgrad<T, BN, ST>(p, cp, x, dy);                                              \
    }
#define HK_WGRAD90_CTAS_1(BN, ST) \
    HK_WGRAD90(f16, __half, BN, ST) HK_WGRAD90(bf16, __nv_bfloat16, BN, ST)
#define HK_WGRAD90_CTAS_2(BN, ST)
#define HK_TILE(BM_, BN, BK_, ST, CTAS)                                                        \
    static_assert(BM_ == hk::sm90::BM && BK_ == hk::sm90::BK && (CTAS == 1 || CTAS == 2),       \
                  "the kernel's block tile is 128 x BN x 64, at one or two blocks per SM");    \
    HK_CONV90_TYPES(BN, ST, CTAS, HK_CTAS_SUFFIX_##CTAS)                                       \
    HK_WGRAD90_CTAS_##CTAS(BN, ST)
#include "hikube_tiles.inc"

// Sums the split-K partials and applies the epilogue.
extern "C" __global__ void conv_sm90_splitk_reduce(hk::GemmParams p) { hk::splitk_reduce(p); }
