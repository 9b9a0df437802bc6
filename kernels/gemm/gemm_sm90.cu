// hikube-archs: compute_90a
//
// GEMM for Hopper (H100, H200): TMA loads into 128-byte-swizzled shared memory, completed on
// mbarriers, and wgmma.mma_async m64nBNk16 from shared memory with f32 accumulators.
//
// One kernel body, two tile configurations (Config below):
// - Wide: 128x256x64 tiles, 4 stages of 48 KiB, in clusters of two CTAs along M. The two CTAs
//   of a cluster compute vertically adjacent tiles that share their columns, so each loads half
//   of the B tile and multicasts it to both: a CTA reads 32 KiB per stage from L2 instead of 48.
// - Narrow: 128x128x64 tiles, 6 stages of 32 KiB, no cluster: for shapes with few output tiles
//   (M of one tile, long K), which it cuts into more tiles and split-K slices.
//
// Warp-specialized and persistent. Warpgroup 0 is the producer (one thread issues the TMA loads;
// setmaxnreg gives its registers away); warpgroups 1 and 2 consume 64 x BN each. "full" barriers
// say a stage has landed (all of it, from both CTAs of a cluster); "empty" barriers that every
// consumer warp of the cluster is done with it (lane 0 of each arrives, locally and on the other
// CTA's barrier, as that CTA's producer writes into this CTA's stage too). A consumer keeps one
// wgmma group in flight while it waits for the next stage.
//
// gridDim.x CTAs (a multiple of the cluster size; about one per SM, or one per work unit) walk
// the work units -- output tiles (pairs of tiles for clusters) x batches x split-K slices --
// gridDim.x / CLUSTER apart in the grouped order of tile_coord_at. The stage ring (k-step
// counter g, mbarrier phases) runs on across units, so the producer loads the next unit while
// the consumers store this one. With clusters, the producer waits at the end until the other
// CTA's consumers have released every stage, so no remote arrival reaches an exited CTA.
//
// Every layout: a K-major operand (A row-major, B column-major) is read in boxes of 64 K
// elements by 128 rows; an MN-major one (A column-major, B row-major) in boxes of 64 K rows by
// 64 elements of M or N, which wgmma reads transposed. Either way, row (or column) r of a tile
// starts r x 128 bytes into it. TMA zero-fills past M, N and K, so any shape works (a cluster's
// second tile past M computes zeros and stores nothing); it needs 16-byte aligned bases and
// leading dimensions (and non-zero batch strides) that are multiples of 8 elements, which the
// host checks.
//
// Epilogue: each consumer warp stores its 16 x BN accumulators through a small shared buffer of
// its own (__syncwarp only). In the common case (f16/bf16 out, no C, no split-K, rows that allow
// 16-byte access: store_packed) α, bias and activation are applied in registers and the outputs
// packed to their type, 64 columns at a time, then stored as 16-byte row segments. Otherwise 32
// f32 columns at a time: rows of 32 contiguous outputs, eight columns per lane with 16-byte
// loads and stores where the host allows it (p.reserved), column pairs otherwise, or f32 partial
// sums into the workspace for split-K (gemm_sm80_splitk_reduce adds them and applies the
// epilogue).
#include "gemm/gemm_params.cuh"
#include "gemm/sm90_tma.cuh"
#include "gemm/wgmma_ops.cuh"

namespace hk {
namespace sm90 {

constexpr int BM = 128, BK = 64;
constexpr int CONSUMERS = 256, THREADS = 128 + CONSUMERS, CONSUMER_WARPS = CONSUMERS / 32;
// A 16 x 32 float epilogue buffer per consumer warp (row stride 40: the float2 stores of a
// half-warp hit 32 distinct banks), after the stages.
constexpr int WROW = 40, WBUF = 16 * WROW;

template <int BN_, int STAGES_, int CLUSTER_, int KSPLIT_ = 1>
struct Config {
    static constexpr int BN = BN_, STAGES = STAGES_, CLUSTER = CLUSTER_, KSPLIT = KSPLIT_;
    // K-split clusters: the KSPLIT CTAs of a cluster sum one tile's K slices; CTA r then owns
    // rows RED_ROWS r .. of the tile and receives every CTA's partial sums of them in RED_BYTES
    // of its (by then idle) stage memory.
    static constexpr int RED_ROWS = BM / KSPLIT, RED_STRIDE = BN + 4;
    static constexpr int RED_BYTES = KSPLIT * RED_ROWS * RED_STRIDE * 4;
    static constexpr int A_BYTES = BM * BK * 2, B_BYTES = BN * BK * 2;
    static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
    // Rows of the B tile this CTA loads (and multicasts to the cluster).
    static constexpr int B_ROWS = BN / CLUSTER;
    // The stages, 1 KiB of slack to align the 128-byte swizzle atoms on 1024-byte boundaries, and
    // the epilogue buffers (SM90_SMEM in src/ops/matmul/config.rs).
    static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES + 1024 + CONSUMER_WARPS * WBUF * 4;
    static_assert(B_ROWS % 128 == 0, "B is loaded in boxes of 128 rows (K-major) or 64 (MN-major)");
    static_assert(SMEM_BYTES <= 227 * 1024, "fits the shared memory of an SM");
    static_assert(KSPLIT == 1 || (CLUSTER == 1 && RED_ROWS % 16 == 0 &&
                                  RED_BYTES <= STAGES * STAGE_BYTES),
                  "K-split clusters: one warp's 16 rows have one owner; the partials fit");
};
using Wide = Config<256, 4, 2>;
using Narrow = Config<128, 6, 1>;
using NarrowSplit = Config<128, 6, 1, 4>;

template <typename T, int TA, int TB, int N>
__device__ __forceinline__ void wgmma(float (&d)[N / 2], unsigned long long a, unsigned long long b) {
    if constexpr (N == 256) {
        if constexpr (IsBf16<T>::value)
            wgmma_m64n256k16_bf16<TA, TB>(d, a, b);
        else
            wgmma_m64n256k16_f16<TA, TB>(d, a, b);
    } else {
        static_assert(N == 128, "tiles are 256 or 128 wide");
        if constexpr (IsBf16<T>::value)
            wgmma_m64n128k16_bf16<TA, TB>(d, a, b);
        else
            wgmma_m64n128k16_f16<TA, TB>(d, a, b);
    }
}

// Two outputs packed into one word of the output type (f16 or bf16), the first in the low half.
__device__ __forceinline__ unsigned pack2(float x, float y, bool bf16) {
    if (bf16) {
        const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
        return *reinterpret_cast<const unsigned*>(&h);
    }
    const __half2 h = __floats2half2_rn(x, y);
    return *reinterpret_cast<const unsigned*>(&h);
}

// The common epilogue -- f16 or bf16 out, no C, no split-K, rows of D and the bias allow 16-byte
// access -- for one consumer warp's 16 x BN accumulators (rows row0 + lane / 4 (+ 8), register
// 4 j + {0, 1} (+ {2, 3}) columns n0 + 8 j + 2 (lane % 4) + {0, 1}). α, bias and activation are
// applied in registers and the results packed to the output type, 64 columns at a time into the
// warp's buffer (16 rows of 36 words: the word stores of a warp hit 32 banks, the 16-byte rows
// stay aligned), then stored as 16-byte rows: eight lanes per 128-byte row segment.
template <int BN>
__device__ __forceinline__ void store_packed(const GemmParams& p, const float (&acc)[BN / 2],
                                             unsigned* hbuf, int batch, int row0, int n0, int lane) {
    constexpr int HROW = 36;
    const bool bf16 = p.out_dtype == OUT_BF16;
#pragma unroll
    for (int c = 0; c < BN / 64; ++c) {
#pragma unroll
        for (int jj = 0; jj < 8; ++jj) {
            const int j = 8 * c + jj, col = n0 + 8 * j + 2 * (lane % 4);
            float v[4] = {p.alpha * acc[4 * j], p.alpha * acc[4 * j + 1], p.alpha * acc[4 * j + 2],
                          p.alpha * acc[4 * j + 3]};
            if (p.bias != nullptr && col < p.n) {
                const float2 b = col + 1 < p.n ? load_out2(p.bias, p.out_dtype, col)
                                               : make_float2(load_out(p.bias, p.out_dtype, col), 0.f);
                v[0] += b.x, v[1] += b.y, v[2] += b.x, v[3] += b.y;
            }
            if (p.activation != ACT_NONE) {
#pragma unroll
                for (int e = 0; e < 4; ++e) v[e] = activate(p.activation, v[e]);
            }
            hbuf[(lane / 4) * HROW + 4 * jj + lane % 4] = pack2(v[0], v[1], bf16);
            hbuf[(lane / 4 + 8) * HROW + 4 * jj + lane % 4] = pack2(v[2], v[3], bf16);
        }
        __syncwarp();
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int lr = lane / 8 + 4 * i, r = row0 + lr, cc = n0 + 64 * c + 8 * (lane % 8);
            if (r >= p.m || cc >= p.n) continue;
            const uint4 w = *reinterpret_cast<const uint4*>(hbuf + lr * HROW + 4 * (lane % 8));
            unsigned short* dst = static_cast<unsigned short*>(p.d) + batch * p.stride_d +
                                  static_cast<long long>(r) * p.ldd + cc;
            if (cc + 8 <= p.n) {
                *reinterpret_cast<uint4*>(dst) = w;
            } else {
#pragma unroll 1
                for (int e = 0; cc + e < p.n; ++e) {
                    const unsigned word = e < 2 ? w.x : e < 4 ? w.y : e < 6 ? w.z : w.w;
                    dst[e] = static_cast<unsigned short>(word >> (16 * (e % 2)));
                }
            }
        }
        __syncwarp();
    }
}

// The end of a tile in a K-split cluster (KSPLIT CTAs, one K slice each, C::KSPLIT > 1): every
// consumer warp sends its 16 x BN partial sums to the CTA that owns those rows (distributed
// shared memory, into the owner's idle stage memory: slot [this CTA's rank][row][column]); then
// each CTA adds the KSPLIT partials of its RED_ROWS rows in rank order (the result does not
// depend on timing) and applies the epilogue, eight columns per thread. The cluster barriers
// (which the producer warpgroup joins) order the stages' last use before the partials land, and
// the partials before they are read.
template <class C>
__device__ __forceinline__ void ksplit_reduce(const GemmParams& p, const float (&acc)[C::BN / 2],
                                              unsigned char* smem, int m0, int n0, int batch,
                                              int krank, int cw, int warp, int lane) {
    constexpr int BN = C::BN, ROWS = C::RED_ROWS, STRIDE = C::RED_STRIDE;
    float* red = reinterpret_cast<float*>(smem);
    cluster_sync_any();
    const int first_row = cw * 64 + warp * 16;  // this warp's 16 rows of the tile
    unsigned remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n"
                 : "=r"(remote)
                 : "r"(smem_u32(red + (krank * ROWS + first_row % ROWS) * STRIDE)),
                   "r"(first_row / ROWS));
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
        const unsigned at = remote + ((lane / 4) * STRIDE + 8 * j + 2 * (lane % 4)) * 4;
        asm volatile("st.shared::cluster.v2.f32 [%0], {%1, %2};\n" ::"r"(at), "f"(acc[4 * j]),
                     "f"(acc[4 * j + 1])
                     : "memory");
        asm volatile("st.shared::cluster.v2.f32 [%0], {%1, %2};\n" ::"r"(at + 8 * STRIDE * 4),
                     "f"(acc[4 * j + 2]), "f"(acc[4 * j + 3])
                     : "memory");
    }
    cluster_sync_any();
    for (int idx = threadIdx.x - 128; idx < ROWS * (BN / 8); idx += CONSUMERS) {
        const int lr = idx / (BN / 8), c8 = 8 * (idx % (BN / 8));
        const int r = m0 + krank * ROWS + lr, c = n0 + c8;
        if (r >= p.m || c >= p.n) continue;
        float v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int s = 0; s < C::KSPLIT; ++s) {
            const float* src = red + (s * ROWS + lr) * STRIDE + c8;
            const float4 lo = *reinterpret_cast<const float4*>(src);
            const float4 hi = *reinterpret_cast<const float4*>(src + 4);
            v[0] += lo.x, v[1] += lo.y, v[2] += lo.z, v[3] += lo.w;
            v[4] += hi.x, v[5] += hi.y, v[6] += hi.z, v[7] += hi.w;
        }
        if (p.reserved != 0 && c + 8 <= p.n) {
            epilogue8(p, batch, r, c, v);
        } else {
#pragma unroll
            for (int e = 0; e < 8; e += 2)
                if (c + e < p.n) epilogue2(p, batch, r, c + e, v[e], v[e + 1]);
        }
    }
}

// The K range [k_begin, k_end) of split-K slice `split`, in BK steps.
__device__ __forceinline__ int k_tiles_of(const GemmParams& p, int split, int& k_begin) {
    k_begin = split * p.k_per_split;  // k_per_split is a multiple of BK
    const int k_end = min(p.k, k_begin + p.k_per_split);
    return k_end > k_begin ? (k_end - k_begin + BK - 1) / BK : 0;
}

template <typename T, bool A_K, bool B_K, class C>
__device__ __forceinline__ void gemm(const GemmParams& p, const TmaDesc& map_a, const TmaDesc& map_b) {
    constexpr int BN = C::BN, STAGES = C::STAGES, CLUSTER = C::CLUSTER;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    __shared__ __align__(8) unsigned long long full[STAGES];
    __shared__ __align__(8) unsigned long long empty[STAGES];
    // 128-byte swizzle atoms must sit on 1024-byte boundaries (the same offset in every CTA, so
    // a multicast lands where each CTA expects it).
    unsigned char* smem = reinterpret_cast<unsigned char*>(
        (reinterpret_cast<unsigned long long>(smem_raw) + 1023) & ~1023ull);
    {
        unsigned dynamic_smem;
        asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_smem));
        if (dynamic_smem < static_cast<unsigned>(C::SMEM_BYTES)) __trap();
    }
    constexpr int KSPLIT = C::KSPLIT, GROUP = CLUSTER * KSPLIT;  // CTAs per cluster
    const int rank = CLUSTER > 1 ? cluster_rank() : 0;
    // K-split clusters: this CTA's slice of K (p.splits == KSPLIT).
    const int krank = KSPLIT > 1 ? cluster_rank() : 0;
    // Work units: CLUSTER x 1 tiles (BM CLUSTER x BN) x batches x slices (x batches for K-split
    // clusters, whose CTAs take one slice each); the host checks that their count fits an int.
    const int tiles = ((p.m + BM * CLUSTER - 1) / (BM * CLUSTER)) * ((p.n + BN - 1) / BN);
    const int total = tiles * p.batch * (KSPLIT > 1 ? 1 : p.splits);
    const int first = blockIdx.x / GROUP, step = gridDim.x / GROUP;
    const int wg = threadIdx.x / 128;
    // A K-split cluster reuses its stage memory for the partial sums: one unit per cluster.
    if (KSPLIT > 1 && step < total) __trap();
    auto coord = [&](int u) {
        return KSPLIT > 1 ? tile_coord_at<BM, BN>(p, u % tiles, (u / tiles) * p.splits + krank)
                          : tile_coord_at<BM * CLUSTER, BN>(p, u % tiles, u / tiles);
    };

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], CLUSTER * CONSUMER_WARPS);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    }
    // The other CTA's barriers must be initialized before this one multicasts or arrives there.
    if constexpr (CLUSTER > 1)
        cluster_sync();
    else
        __syncthreads();

    if (wg == 0) {
        // Producer: a few registers suffice.
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
        if (threadIdx.x == 0) {
            int g = 0;
            for (int u = first; u < total; u += step) {
                const TileCoord tc = coord(u);
                const int m0 = tc.m0 + rank * BM;
                int k_begin;
                const int k_tiles = k_tiles_of(p, tc.split, k_begin);
                for (int kt = 0; kt < k_tiles; ++kt, ++g) {
                    const int k0 = k_begin + kt * BK;
                    const int s = g % STAGES;
                    if (g >= STAGES) mbar_wait(&empty[s], ((g / STAGES) - 1) & 1);
                    unsigned char* stage = smem + s * C::STAGE_BYTES;
                    mbar_expect_tx(&full[s], C::STAGE_BYTES);
                    // A: this CTA's own 128 rows.
                    if (A_K) {
                        tma_load_3d(stage, &map_a, k0, m0, tc.batch, &full[s]);
                    } else {
#pragma unroll
                        for (int i = 0; i < BM / 64; ++i)
                            tma_load_3d(stage + i * 8192, &map_a, m0 + 64 * i, k0, tc.batch, &full[s]);
                    }
                    // B: this CTA's share of the tile's rows, to every CTA of the cluster.
                    constexpr int BOX = B_K ? 128 : 64;
#pragma unroll
                    for (int i = 0; i < C::B_ROWS / BOX; ++i) {
                        const int r = rank * C::B_ROWS + BOX * i;
                        unsigned char* dst = stage + C::A_BYTES + r * 128;
                        const int c0 = B_K ? k0 : tc.n0 + r, c1 = B_K ? tc.n0 + r : k0;
                        if constexpr (CLUSTER > 1)
                            tma_load_3d_multicast(dst, &map_b, c0, c1, tc.batch, &full[s],
                                                  (1u << CLUSTER) - 1);
                        else
                            tma_load_3d(dst, &map_b, c0, c1, tc.batch, &full[s]);
                    }
                }
            }
            if constexpr (CLUSTER > 1) {
                // Wait for every consumer warp of the cluster to release the last STAGES stages.
                for (int i = 0; i < STAGES; ++i, ++g)
                    if (g >= STAGES) mbar_wait(&empty[g % STAGES], ((g / STAGES) - 1) & 1);
            }
        }
        // The K-split cluster's two barriers (ksplit_reduce), joined by the whole warpgroup.
        if constexpr (KSPLIT > 1) {
            cluster_sync_any();
            cluster_sync_any();
        }
        return;
    }

    // Consumers: the accumulators need the registers.
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int cw = wg - 1;  // consumer warpgroup: rows 64 cw .. 64 cw + 63 of the tile
    const int lane = threadIdx.x % 32, warp = (threadIdx.x % 128) / 32;
    float* wbuf = reinterpret_cast<float*>(smem + STAGES * C::STAGE_BYTES) + (cw * 4 + warp) * WBUF;
    // Stage s is free again for this warp: tell this CTA's producer and the other CTA's.
    auto release = [&](int s) {
        if (lane == 0) {
            mbar_arrive(&empty[s]);
#pragma unroll
            for (int r = 0; r < CLUSTER; ++r)
                if (r != rank) mbar_arrive_cluster(&empty[s], r);
        }
    };
    int g = 0;
    for (int u = first; u < total; u += step) {
        const TileCoord tc = coord(u);
        int k_begin;
        const int k_tiles = k_tiles_of(p, tc.split, k_begin);
        float acc[BN / 2];
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) acc[i] = 0.f;
        for (int kt = 0; kt < k_tiles; ++kt, ++g) {
            const int s = g % STAGES;
            mbar_wait(&full[s], (g / STAGES) & 1);
            // Consumer cw's 64 rows of A: 64 rows of 128 B (K-major) or the cw-th 64-wide box.
            const unsigned char* a = smem + s * C::STAGE_BYTES + cw * 8192;
            const unsigned char* b = smem + s * C::STAGE_BYTES + C::A_BYTES;
            asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
            for (int kk = 0; kk < BK / 16; ++kk)
                wgmma<T, A_K ? 0 : 1, B_K ? 0 : 1, BN>(acc, desc_sw128<A_K>(a + k_step_bytes<A_K>(kk)),
                                                       desc_sw128<B_K>(b + k_step_bytes<B_K>(kk)));
            asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
            // Keep this step's group in flight; the previous step's is done, so its stage is free.
            asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
            if (kt > 0) release((g - 1) % STAGES);
        }
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        if (k_tiles > 0) release((g - 1) % STAGES);

        // Warp `warp` of consumer cw holds rows 16 warp + lane / 4 (+ 8) of the consumer's 64;
        // register 4 j + {0, 1} (+ {2, 3}: the row 8 below) columns 8 j + 2 (lane % 4) + {0, 1}.
        // 32 columns (j = 4 c .. 4 c + 3) at a time go through the warp's buffer and out as two
        // rows of 32 contiguous outputs per warp-wide store.
        if constexpr (KSPLIT > 1) {
            ksplit_reduce<C>(p, acc, smem, tc.m0, tc.n0, tc.batch, krank, cw, warp, lane);
            continue;
        }
        const int row0 = tc.m0 + rank * BM + cw * 64 + warp * 16;
        // p.reserved: rows of D, C and the bias allow 16-byte access (the host's vec8_ok).
        const bool vec8 = p.splits == 1 && p.reserved != 0;
        if (vec8 && p.beta == 0.f && p.out_dtype != OUT_F32) {
            store_packed<BN>(p, acc, reinterpret_cast<unsigned*>(wbuf), tc.batch, row0, tc.n0, lane);
            continue;
        }
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

// Per (type, layout): gemm_sm90_<t>_128x256x64x4_<ar|ac><br|bc>_persistent (clusters of two),
// gemm_sm90_<t>_128x128x64x6_<ar|ac><br|bc>_persistent, and its K-split clusters of four,
// gemm_sm90_<t>_128x128x64x6_<ar|ac><br|bc>_splitk4 (a block per tile and K slice).
#define HK_SM90(TNAME, T, LAYOUT, AK, BK_)                                                        \
    extern "C" __global__ void __launch_bounds__(hk::sm90::THREADS, 1) __cluster_dims__(2, 1, 1) \
        gemm_sm90_##TNAME##_128x256x64x4_##LAYOUT##_persistent(                                  \
            hk::GemmParams p, const __grid_constant__ hk::sm90::TmaDesc a,                       \
            const __grid_constant__ hk::sm90::TmaDesc b) {                                       \
        hk::sm90::gemm<T, AK, BK_, hk::sm90::Wide>(p, a, b);                                     \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(hk::sm90::THREADS, 1)                           \
        gemm_sm90_##TNAME##_128x128x64x6_##LAYOUT##_persistent(                                  \
            hk::GemmParams p, const __grid_constant__ hk::sm90::TmaDesc a,                       \
            const __grid_constant__ hk::sm90::TmaDesc b) {                                       \
        hk::sm90::gemm<T, AK, BK_, hk::sm90::Narrow>(p, a, b);                                   \
    }                                                                                            \
    extern "C" __global__ void __launch_bounds__(hk::sm90::THREADS, 1) __cluster_dims__(4, 1, 1) \
        gemm_sm90_##TNAME##_128x128x64x6_##LAYOUT##_splitk4(                                     \
            hk::GemmParams p, const __grid_constant__ hk::sm90::TmaDesc a,                       \
            const __grid_constant__ hk::sm90::TmaDesc b) {                                       \
        hk::sm90::gemm<T, AK, BK_, hk::sm90::NarrowSplit>(p, a, b);                              \
    }
#define HK_SM90_LAYOUTS(TNAME, T)        \
    HK_SM90(TNAME, T, arbc, true, true)  \
    HK_SM90(TNAME, T, arbr, true, false) \
    HK_SM90(TNAME, T, acbc, false, true) \
    HK_SM90(TNAME, T, acbr, false, false)

HK_SM90_LAYOUTS(f16, __half)
HK_SM90_LAYOUTS(bf16, __nv_bfloat16)
