// hikube-archs: compute_90a
//
// GEMM for Hopper (H100, H200): TMA loads into 128-byte-swizzled shared memory, completed on
// mbarriers, and wgmma.mma_async m64n256k16 from shared memory with f32 accumulators.
// Block tile 128x256x64, 4 pipeline stages (48 KiB each), warp-specialized: warpgroup 0 is the
// producer (one thread issues the TMA loads; setmaxnreg gives its registers away), warpgroups
// 1 and 2 consume 64x256 each. "full" barriers say a stage has landed, "empty" barriers that
// both consumers are done with it; a consumer keeps one wgmma group in flight while it waits.
// Every layout: a K-major operand (A row-major, B column-major) is read in one box of 64 K
// elements per row; an MN-major one (A column-major, B row-major) in boxes of 64 K rows by 64
// elements of M or N, which wgmma reads transposed. blockIdx.y is batch x split-K slice. TMA
// zero-fills past M, N and K, so any shape works; it needs 16-byte aligned bases and leading
// dimensions (and non-zero batch strides) that are multiples of 8 elements, which the host
// checks. Epilogue: accumulators parked in shared memory, then the shared epilogue of
// gemm_params.cuh (coalesced stores), or f32 partial sums for split-K.
//
// Two kernels per (type, layout): `_aligned`, one block per output tile (blockIdx.x the tile,
// blockIdx.y batch x split-K slice), and `_persistent`: gridDim.x blocks (about one per SM) walk
// the tiles x slices gridDim.x apart, in the grouped order of tile_coord_at, and the stage ring
// (k-step counter g, mbarrier phases) runs on across tiles, so the producer loads the next tile
// while the consumers store this one. As the stages are busy then, each consumer warp stores its
// 16 x 256 accumulators through a small shared buffer of its own, 32 columns at a time
// (__syncwarp only): rows of 32 contiguous outputs, eight columns per lane with 16-byte loads
// and stores where the host allows it (p.reserved), column pairs otherwise.
#include "gemm/gemm_params.cuh"
#include "gemm/sm90_tma.cuh"
#include "gemm/wgmma_ops.cuh"

namespace hk {
namespace sm90 {

constexpr int BM = 128, BN = 256, BK = 64, STAGES = 4;
constexpr int CONSUMERS = 256, THREADS = 128 + CONSUMERS;
constexpr int A_BYTES = BM * BK * 2, B_BYTES = BN * BK * 2, STAGE_BYTES = A_BYTES + B_BYTES;
constexpr int SROW = BN + 8;  // epilogue staging row, floats
constexpr int SMEM_BYTES = STAGES * STAGE_BYTES + 1024;  // + alignment slack for 1024-B swizzle atoms
static_assert(BM * SROW * 4 <= STAGES * STAGE_BYTES, "the epilogue staging fits in the stages");
// Persistent kernel: a 16 x 32 float buffer per consumer warp (row stride 40: the float2 stores
// of a half-warp hit 32 distinct banks), after the stages.
constexpr int WROW = 40, WBUF = 16 * WROW;
constexpr int P_SMEM_BYTES = SMEM_BYTES + (CONSUMERS / 32) * WBUF * 4;

template <typename T, int TA, int TB>
__device__ __forceinline__ void wgmma(float (&d)[128], unsigned long long a, unsigned long long b) {
    if constexpr (IsBf16<T>::value)
        wgmma_m64n256k16_bf16<TA, TB>(d, a, b);
    else
        wgmma_m64n256k16_f16<TA, TB>(d, a, b);
}

template <typename T, bool A_K, bool B_K>
__device__ __forceinline__ void gemm(const GemmParams& p, const TmaDesc& map_a, const TmaDesc& map_b) {
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    __shared__ __align__(8) unsigned long long full[STAGES];
    __shared__ __align__(8) unsigned long long empty[STAGES];
    // 128-byte swizzle atoms must sit on 1024-byte boundaries.
    unsigned char* smem = reinterpret_cast<unsigned char*>(
        (reinterpret_cast<unsigned long long>(smem_raw) + 1023) & ~1023ull);
    {
        unsigned dynamic_smem;
        asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_smem));
        if (dynamic_smem < static_cast<unsigned>(SMEM_BYTES)) __trap();
    }

    const int tiles_m = (p.m + BM - 1) / BM, tiles_n = (p.n + BN - 1) / BN;
    constexpr int GROUP_M = 8;
    const int pid = blockIdx.x, group = GROUP_M * tiles_n;
    const int first_m = (pid / group) * GROUP_M, gsize = min(tiles_m - first_m, GROUP_M);
    const int m0 = (first_m + (pid % group) % gsize) * BM, n0 = ((pid % group) / gsize) * BN;
    // blockIdx.y = batch x split-K slice: this block sums K over [k_begin, k_end).
    const int batch = blockIdx.y / p.splits, split = blockIdx.y % p.splits;
    const int k_begin = split * p.k_per_split, k_end = min(p.k, k_begin + p.k_per_split);
    const int k_tiles = k_end > k_begin ? (k_end - k_begin + BK - 1) / BK : 0;
    const int wg = threadIdx.x / 128;

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], CONSUMERS);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {
        // Producer: a few registers suffice.
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
        if (threadIdx.x == 0) {
            for (int kt = 0; kt < k_tiles; ++kt) {
                const int k0 = k_begin + kt * BK;  // k_per_split is a multiple of BK
                const int s = kt % STAGES;
                if (kt >= STAGES) mbar_wait(&empty[s], ((kt / STAGES) - 1) & 1);
                unsigned char* stage = smem + s * STAGE_BYTES;
                mbar_expect_tx(&full[s], STAGE_BYTES);
                // K-major: one box of 64 K x rows; MN-major: boxes of 64 MN x 64 K rows.
                if (A_K) {
                    tma_load_3d(stage, &map_a, k0, m0, batch, &full[s]);
                } else {
#pragma unroll
                    for (int i = 0; i < BM / 64; ++i)
                        tma_load_3d(stage + i * 8192, &map_a, m0 + 64 * i, k0, batch, &full[s]);
                }
                if (B_K) {
                    tma_load_3d(stage + A_BYTES, &map_b, k0, n0, batch, &full[s]);
                } else {
#pragma unroll
                    for (int i = 0; i < BN / 64; ++i)
                        tma_load_3d(stage + A_BYTES + i * 8192, &map_b, n0 + 64 * i, k0, batch,
                                    &full[s]);
                }
            }
        }
        return;
    }

    // Consumers: the accumulators need the registers.
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int cw = wg - 1;  // consumer warpgroup: rows 64 cw .. 64 cw + 63 of the tile
    float acc[128];
#pragma unroll
    for (int i = 0; i < 128; ++i) acc[i] = 0.f;

    for (int kt = 0; kt < k_tiles; ++kt) {
        const int s = kt % STAGES;
        mbar_wait(&full[s], (kt / STAGES) & 1);
        // Consumer cw's 64 rows of A: 64 rows of 128 B (K-major) or the cw-th 64-wide box.
        const unsigned char* a = smem + s * STAGE_BYTES + cw * 8192;
        const unsigned char* b = smem + s * STAGE_BYTES + A_BYTES;
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk)
            wgmma<T, A_K ? 0 : 1, B_K ? 0 : 1>(acc, desc_sw128<A_K>(a + k_step_bytes<A_K>(kk)),
                                               desc_sw128<B_K>(b + k_step_bytes<B_K>(kk)));
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        // Keep this tile's group in flight; the previous tile's is done, so its stage is free.
        asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
        if (kt > 0) mbar_arrive(&empty[(kt - 1) % STAGES]);
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");

    // Park the accumulators: consumer cw owns rows 64 cw .. 64 cw + 63; in it, warp w has rows
    // 16 w + lane / 4 (+ 8), and register 4 j + {0, 1} (+ {2, 3} for the row 8 below) holds
    // columns 8 j + 2 (lane % 4) + {0, 1}. Every TMA load has landed (each was waited for),
    // so the stages can be reused; only the consumers synchronize (named barrier 1).
    float* stage_out = reinterpret_cast<float*>(smem);
    const int t = threadIdx.x % 128, warp = t / 32, lane = t % 32;
    const int row = cw * 64 + warp * 16 + lane / 4;
    asm volatile("bar.sync 1, %0;\n" ::"n"(CONSUMERS) : "memory");
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
        const int col = 8 * j + 2 * (lane % 4);
        *reinterpret_cast<float2*>(stage_out + row * SROW + col) = make_float2(acc[4 * j], acc[4 * j + 1]);
        *reinterpret_cast<float2*>(stage_out + (row + 8) * SROW + col) =
            make_float2(acc[4 * j + 2], acc[4 * j + 3]);
    }
    asm volatile("bar.sync 1, %0;\n" ::"n"(CONSUMERS) : "memory");
    for (int idx = threadIdx.x - 128; idx < BM * (BN / 2); idx += CONSUMERS) {
        const int lr = idx / (BN / 2), col = (idx % (BN / 2)) * 2;
        const int r = m0 + lr, c = n0 + col;
        if (r >= p.m || c >= p.n) continue;
        const float2 v = *reinterpret_cast<const float2*>(stage_out + lr * SROW + col);
        // With split-K, gemm_sm80_splitk_reduce adds the slices and applies the epilogue.
        store_result(p, split, batch, r, c, v.x, v.y);
    }
}


// The persistent kernel (see the top of the file).
template <typename T, bool A_K, bool B_K>
__device__ __forceinline__ void gemm_persistent(const GemmParams& p, const TmaDesc& map_a,
                                                const TmaDesc& map_b) {
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    __shared__ __align__(8) unsigned long long full[STAGES];
    __shared__ __align__(8) unsigned long long empty[STAGES];
    unsigned char* smem = reinterpret_cast<unsigned char*>(
        (reinterpret_cast<unsigned long long>(smem_raw) + 1023) & ~1023ull);
    {
        unsigned dynamic_smem;
        asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_smem));
        if (dynamic_smem < static_cast<unsigned>(P_SMEM_BYTES)) __trap();
    }
    const int tiles = ((p.m + BM - 1) / BM) * ((p.n + BN - 1) / BN);
    const int total = tiles * p.batch * p.splits;  // the host checks that this fits an int
    const int wg = threadIdx.x / 128;

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], CONSUMERS);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
        if (threadIdx.x != 0) return;
        int g = 0;
        for (int t = blockIdx.x; t < total; t += gridDim.x) {
            const TileCoord tc = tile_coord_at<BM, BN>(p, t % tiles, t / tiles);
            const int k_begin = tc.split * p.k_per_split, k_end = min(p.k, k_begin + p.k_per_split);
            const int k_tiles = k_end > k_begin ? (k_end - k_begin + BK - 1) / BK : 0;
            for (int kt = 0; kt < k_tiles; ++kt, ++g) {
                const int k0 = k_begin + kt * BK;
                const int s = g % STAGES;
                if (g >= STAGES) mbar_wait(&empty[s], ((g / STAGES) - 1) & 1);
                unsigned char* stage = smem + s * STAGE_BYTES;
                mbar_expect_tx(&full[s], STAGE_BYTES);
                if (A_K) {
                    tma_load_3d(stage, &map_a, k0, tc.m0, tc.batch, &full[s]);
                } else {
#pragma unroll
                    for (int i = 0; i < BM / 64; ++i)
                        tma_load_3d(stage + i * 8192, &map_a, tc.m0 + 64 * i, k0, tc.batch,
                                    &full[s]);
                }
                if (B_K) {
                    tma_load_3d(stage + A_BYTES, &map_b, k0, tc.n0, tc.batch, &full[s]);
                } else {
#pragma unroll
                    for (int i = 0; i < BN / 64; ++i)
                        tma_load_3d(stage + A_BYTES + i * 8192, &map_b, tc.n0 + 64 * i, k0,
                                    tc.batch, &full[s]);
                }
            }
        }
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int cw = wg - 1;
    const int lane = threadIdx.x % 32, warp = (threadIdx.x % 128) / 32;
    float* wbuf = reinterpret_cast<float*>(smem + STAGES * STAGE_BYTES) + (cw * 4 + warp) * WBUF;
    int g = 0;
    for (int t = blockIdx.x; t < total; t += gridDim.x) {
        const TileCoord tc = tile_coord_at<BM, BN>(p, t % tiles, t / tiles);
        const int k_begin = tc.split * p.k_per_split, k_end = min(p.k, k_begin + p.k_per_split);
        const int k_tiles = k_end > k_begin ? (k_end - k_begin + BK - 1) / BK : 0;
        float acc[128];
#pragma unroll
        for (int i = 0; i < 128; ++i) acc[i] = 0.f;
        for (int kt = 0; kt < k_tiles; ++kt, ++g) {
            const int s = g % STAGES;
            mbar_wait(&full[s], (g / STAGES) & 1);
            const unsigned char* a = smem + s * STAGE_BYTES + cw * 8192;
            const unsigned char* b = smem + s * STAGE_BYTES + A_BYTES;
            asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
            for (int kk = 0; kk < BK / 16; ++kk)
                wgmma<T, A_K ? 0 : 1, B_K ? 0 : 1>(acc, desc_sw128<A_K>(a + k_step_bytes<A_K>(kk)),
                                                   desc_sw128<B_K>(b + k_step_bytes<B_K>(kk)));
            asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
            asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
            if (kt > 0) mbar_arrive(&empty[(g - 1) % STAGES]);
        }
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        if (k_tiles > 0) mbar_arrive(&empty[(g - 1) % STAGES]);

        // Warp `warp` of consumer cw holds rows 16 warp + lane / 4 (+ 8) of the consumer's 64;
        // register 4 j + {0, 1} (+ {2, 3}: the row 8 below) columns 8 j + 2 (lane % 4) + {0, 1}.
        // 32 columns (j = 4 c .. 4 c + 3) at a time go through the warp's buffer and out as two
        // rows of 32 contiguous outputs per warp-wide store.
        const int row0 = tc.m0 + cw * 64 + warp * 16;
        // p.reserved: rows of D, C and the bias allow 16-byte access (the host's vec8_ok).
        const bool vec8 = p.splits == 1 && p.reserved != 0;
#pragma unroll
        for (int c = 0; c < BN / 32; ++c) {
#pragma unroll
            for (int jj = 0; jj < 4; ++jj) {
                const int j = 4 * c + jj, col = 8 * jj + 2 * (lane % 4);
                *reinterpret_cast<float2*>(wbuf + (lane / 4) * WROW + col) =
                    make_float2(acc[4 * j], acc[4 * j + 1]);
                *reinterpret_cast<float2*>(wbuf + (lane / 4 + 8) * WROW + col) =
                    make_float2(acc[4 * j + 2], acc[4 * j + 3]);
            }
            __syncwarp();
            if (vec8) {
                // Eight columns per lane, four lanes per row: 16-byte loads and stores.
                const int col = 8 * (lane % 4), cc = tc.n0 + 32 * c + col;
#pragma unroll 1
                for (int h = 0; h < 2; ++h) {
                    const int lr = 8 * h + lane / 4, r = row0 + lr;
                    const float* src = wbuf + lr * WROW + col;
                    if (r >= p.m || cc >= p.n) continue;
                    if (cc + 8 <= p.n) {
                        const float4 lo = *reinterpret_cast<const float4*>(src);
                        const float4 hi = *reinterpret_cast<const float4*>(src + 4);
                        float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
                        epilogue8(p, tc.batch, r, cc, v);
                    } else {
#pragma unroll 1
                        for (int e = 0; e < 8 && cc + e < p.n; e += 2)
                            epilogue2(p, tc.batch, r, cc + e, src[e], src[e + 1]);
                    }
                }
            } else {
                // Column pairs (split-K partials, or rows that do not allow 16-byte access).
                const int col = 2 * (lane % 16), cc = tc.n0 + 32 * c + col;
#pragma unroll 1
                for (int lr = lane / 16; lr < 16; lr += 2) {
                    const int r = row0 + lr;
                    const float2 v = *reinterpret_cast<const float2*>(wbuf + lr * WROW + col);
                    if (r < p.m && cc < p.n) store_result(p, tc.split, tc.batch, r, cc, v.x, v.y);
                }
            }
            __syncwarp();
        }
    }
}

}  // namespace sm90
}  // namespace hk

// Per (type, layout): gemm_sm90_<t>_128x256x64x4_<ar|ac><br|bc>_<aligned|persistent>.
#define HK_SM90(TNAME, T, LAYOUT, AK, BK_)                                                        \
    extern "C" __global__ void __launch_bounds__(hk::sm90::THREADS, 1)                           \
        gemm_sm90_##TNAME##_128x256x64x4_##LAYOUT##_aligned(                                     \
            hk::GemmParams p, const __grid_constant__ hk::sm90::TmaDesc a,                       \
            const __grid_constant__ hk::sm90::TmaDesc b) {                                       \
        hk::sm90::gemm<T, AK, BK_>(p, a, b);                                                     \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(hk::sm90::THREADS, 1)                           \
        gemm_sm90_##TNAME##_128x256x64x4_##LAYOUT##_persistent(                                  \
            hk::GemmParams p, const __grid_constant__ hk::sm90::TmaDesc a,                       \
            const __grid_constant__ hk::sm90::TmaDesc b) {                                       \
        hk::sm90::gemm_persistent<T, AK, BK_>(p, a, b);                                          \
    }
#define HK_SM90_LAYOUTS(TNAME, T)        \
    HK_SM90(TNAME, T, arbc, true, true)  \
    HK_SM90(TNAME, T, arbr, true, false) \
    HK_SM90(TNAME, T, acbc, false, true) \
    HK_SM90(TNAME, T, acbr, false, false)

HK_SM90_LAYOUTS(f16, __half)
HK_SM90_LAYOUTS(bf16, __nv_bfloat16)
