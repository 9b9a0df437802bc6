// The Hopper GEMM's body (gemm_sm90.cu for f16/bf16, gemm_fp8_sm90.cu for FP8): TMA loads into
// 128-byte-swizzled shared memory, completed on mbarriers, and wgmma.mma_async from shared memory
// with f32 accumulators.
//
// Warp-specialized and persistent. Warpgroup 0 is the producer (one thread issues the TMA loads;
// setmaxnreg gives its registers away); warpgroups 1 and 2 consume 64 x BN each. "full" barriers
// say a stage has landed; "empty" barriers that every consumer warp is done with it (lane 0 of
// each arrives). A consumer keeps one wgmma group in flight while it waits for the next stage.
//
// gridDim.x CTAs (about one per SM, or one per work unit) walk the work units -- output tiles x
// batches x split-K slices -- gridDim.x apart in the grouped order of tile_coord_at. The stage
// ring (k-step counter g, mbarrier phases) runs on across units, so the producer loads the next
// unit while the consumers store this one.
//
// A stage holds 128 bytes of K per row: 64 elements of a 16-bit type, 128 of an FP8 one (KE).
// Every layout of the 16-bit types: a K-major operand (A row-major, B column-major) is read in
// boxes of KE K elements by 128 rows; an MN-major one (A column-major, B row-major) in boxes of
// 64 K rows by 64 elements of M or N, which wgmma reads transposed. Either way, row (or column) r
// of a tile starts r x 128 bytes into it. FP8 operands are K-major only (wgmma reads them no other
// way). TMA zero-fills past M, N and K, so any shape works; it needs 16-byte aligned bases and
// leading dimensions (and non-zero batch strides), which the host checks.
//
// Epilogue: each consumer warp stores its 16 x BN accumulators through a small shared buffer of
// its own, 32 columns at a time (__syncwarp only): rows of 32 contiguous outputs, eight columns
// per lane with 16-byte loads and stores where the host allows it (p.reserved), column pairs
// otherwise, or f32 partial sums into the workspace for split-K (gemm_sm80_splitk_reduce adds
// them and applies the epilogue). An FP8 kernel first multiplies the accumulators by its two
// scales (read from device memory at the start) and can keep the largest magnitude it stores
// (hk::Fp8Scales::amax).
//
// Measured on the H100 and removed again (BENCHMARKS.md; the code is commit bd1b610): 2-CTA
// clusters with B multicast (2-3 % slower at 2048^3 and 4096^3), K-split clusters that add their
// partial sums in distributed shared memory (slower than split-K through the workspace), and an
// epilogue applied in registers and packed to f16/bf16 before the shared buffer (no faster).
#pragma once
#include "gemm/gemm_params.cuh"
#include "gemm/sm90_skeleton.cuh"

namespace hk {
namespace sm90 {

constexpr int CONSUMER_WARPS = CONSUMERS / 32;
// A 16 x 32 float epilogue buffer per consumer warp (row stride 40: the float2 stores of a
// half-warp hit 32 distinct banks), after the stages.
constexpr int WROW = 40, WBUF = 16 * WROW;

template <int BN_, int STAGES_>
struct Config {
    static constexpr int BN = BN_, STAGES = STAGES_;
    // BK 16-bit elements = 128 bytes of K per row, whatever the type.
    static constexpr int A_BYTES = BM * BK * 2, B_BYTES = BN * BK * 2;
    static constexpr int STAGE_BYTES = A_BYTES + B_BYTES;
    // The stages, 1 KiB of slack to align the 128-byte swizzle atoms on 1024-byte boundaries, and
    // the epilogue buffers (sm90_smem in src/ops/gemm.rs).
    static constexpr int SMEM_BYTES = STAGES * STAGE_BYTES + 1024 + CONSUMER_WARPS * WBUF * 4;
    static_assert(BN % 128 == 0, "B is loaded in boxes of 128 rows (K-major) or 64 (MN-major)");
    static_assert(SMEM_BYTES <= 227 * 1024, "fits the shared memory of an SM");
};

// K elements per stage: 128 bytes of T.
template <typename T>
constexpr int k_elems() {
    return 128 / static_cast<int>(sizeof(T));
}

// The K range [k_begin, k_end) of split-K slice `split`, in steps of KE.
template <int KE>
__device__ __forceinline__ int k_tiles_of(const GemmParams& p, int split, int& k_begin) {
    k_begin = split * p.k_per_split;  // k_per_split is a multiple of KE
    const int k_end = min(p.k, k_begin + p.k_per_split);
    return k_end > k_begin ? (k_end - k_begin + KE - 1) / KE : 0;
}

// The producer thread: loads every stage of this block's work units.
template <typename T, bool A_K, bool B_K, class C, class Coord>
__device__ __forceinline__ void produce(const GemmParams& p, const TmaDesc& map_a,
                                        const TmaDesc& map_b, const StageRing<C::STAGES>& ring,
                                        unsigned char* smem, int total, Coord coord) {
    constexpr int BN = C::BN, KE = k_elems<T>();
    int g = 0;
    for (int u = blockIdx.x; u < total; u += gridDim.x) {
        const TileCoord tc = coord(u);
        int k_begin;
        const int k_tiles = k_tiles_of<KE>(p, tc.split, k_begin);
        for (int kt = 0; kt < k_tiles; ++kt, ++g) {
            const int k0 = k_begin + kt * KE;
            const int s = ring.acquire(g);
            unsigned char* stage = smem + s * C::STAGE_BYTES;
            mbar_expect_tx(&ring.full[s], C::STAGE_BYTES);
            if (A_K) {
                tma_load_3d(stage, &map_a, k0, tc.m0, tc.batch, &ring.full[s]);
            } else {
#pragma unroll
                for (int i = 0; i < BM / 64; ++i)
                    tma_load_3d(stage + i * 8192, &map_a, tc.m0 + 64 * i, k0, tc.batch,
                                &ring.full[s]);
            }
            constexpr int BOX = B_K ? 128 : 64;  // rows (K-major) or columns per box
#pragma unroll
            for (int r = 0; r < BN; r += BOX) {
                unsigned char* dst = stage + C::A_BYTES + r * 128;
                if (B_K)
                    tma_load_3d(dst, &map_b, k0, tc.n0 + r, tc.batch, &ring.full[s]);
                else
                    tma_load_3d(dst, &map_b, tc.n0 + r, k0, tc.batch, &ring.full[s]);
            }
        }
    }
}

// Consumer warp `warp` of consumer cw: stores the 16 x BN accumulators of its rows of tile tc,
// times `scale`, through its buffer wbuf; track sees every value stored.
template <int BN, class Track>
__device__ __forceinline__ void store_tile(const GemmParams& p, const TileCoord& tc, int cw,
                                           int warp, int lane, float* wbuf,
                                           const float (&acc)[BN / 2], float scale, Track track) {
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
                make_float2(scale * acc[4 * j], scale * acc[4 * j + 1]);
            *reinterpret_cast<float2*>(wbuf + (lane / 4 + 8) * WROW + col) =
                make_float2(scale * acc[4 * j + 2], scale * acc[4 * j + 3]);
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
                    epilogue8(p, tc.batch, r, cc, v, track);
                } else {
#pragma unroll 1
                    for (int e = 0; e < 8 && cc + e < p.n; e += 2)
                        epilogue2(p, tc.batch, r, cc + e, src[e], src[e + 1], track);
                }
            }
        } else {
            // Column pairs (split-K partials, or rows that do not allow 16-byte access).
            const int col = 2 * (lane % 16), cc = tc.n0 + 32 * c + col;
#pragma unroll 1
            for (int lr = lane / 16; lr < 16; lr += 2) {
                const int r = row0 + lr;
                const float2 v = *reinterpret_cast<const float2*>(wbuf + lr * WROW + col);
                if (r < p.m && cc < p.n)
                    store_result(p, tc.split, tc.batch, r, cc, v.x, v.y, track);
            }
        }
        __syncwarp();
    }
}

// consume_stages for FP8 with two-level accumulation (DeepGEMM's promotion): the tensor cores
// accumulate FP8 products in less than f32 precision (the error grows with K: 1.2e-3 relative at
// K = 4096 on the H100), so each stage's 128 K go into a fresh f32 partial sum, which the
// consumer then adds to `acc` in full f32. The partials cover 128 columns at a time (one half of
// a 256-wide tile), each its own wgmma group; waiting for a group before adding it costs this
// warpgroup its overlap, which the other consumer's wgmma covers.
template <typename T, int BN, int STAGES, class Release>
__device__ __forceinline__ void consume_promoted(float (&acc)[BN / 2], const StageRing<STAGES>& ring,
                                                 int& g, int k_tiles, const unsigned char* smem,
                                                 int stage_bytes, int a_offset, int b_offset,
                                                 Release release) {
    constexpr int PN = BN > 128 ? 128 : BN;  // columns per partial sum (registers: 64 more)
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.f;
    // One partial-sum array for every group: each group's first wgmma overwrites it (scale-d 0),
    // and it is read back before the next group's, which keeps its registers few.
    float part[PN / 2];
    for (int kt = 0; kt < k_tiles; ++kt, ++g) {
        const int s = ring.wait_full(g);
        const unsigned char* a = smem + s * stage_bytes + a_offset;
        const unsigned char* b = smem + s * stage_bytes + b_offset;
#pragma unroll
        for (int h = 0; h < BN / PN; ++h) {
            asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
            for (int kk = 0; kk < BK / 16; ++kk)
                wgmma_step<T, 0, 0, PN>(part, desc_sw128<true>(a + k_step_bytes<true>(kk)),
                                        desc_sw128<true>(b + h * PN * 128 + k_step_bytes<true>(kk)),
                                        kk > 0);
            asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
            asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
            if (h == BN / PN - 1) release(s);
#pragma unroll
            for (int i = 0; i < PN / 2; ++i) acc[h * (PN / 2) + i] += part[i];
        }
    }
}

// The kernel body. SCALED (the FP8 kernels): the accumulators are multiplied by the two scales
// of `scales`, and the largest magnitude stored goes to scales.amax unless it is null. PROMOTE
// (FP8): two-level accumulation (consume_promoted).
template <typename T, bool A_K, bool B_K, class C, bool SCALED, bool PROMOTE = false>
__device__ __forceinline__ void gemm(const GemmParams& p, const TmaDesc& map_a, const TmaDesc& map_b,
                                     const Fp8Scales& scales) {
    static_assert(Fp8Kind<T>::value == 0 || (A_K && B_K), "FP8 operands are K-major");
    constexpr int BN = C::BN, STAGES = C::STAGES;
    __shared__ __align__(8) unsigned long long full[STAGES];
    __shared__ __align__(8) unsigned long long empty[STAGES];
    const StageRing<STAGES> ring{full, empty};
    unsigned char* smem = swizzle_smem(C::SMEM_BYTES);
    // Work units: tiles x batches x slices; the host checks that their count fits an int.
    const int tiles = ((p.m + BM - 1) / BM) * ((p.n + BN - 1) / BN);
    const int total = tiles * p.batch * p.splits;
    const int wg = warpgroup();
    auto coord = [&](int u) { return tile_coord_at<BM, BN>(p, u % tiles, u / tiles); };

    ring.init(1, CONSUMER_WARPS);

    if (wg == 0) {
        // Producer: a few registers suffice.
        producer_registers<1>();
        if (threadIdx.x == 0) produce<T, A_K, B_K, C>(p, map_a, map_b, ring, smem, total, coord);
        return;
    }

    // Consumers: the accumulators need the registers.
    consumer_registers<1>();
    const int cw = wg - 1;  // consumer warpgroup: rows 64 cw .. 64 cw + 63 of the tile
    const int lane = threadIdx.x % 32, warp = (threadIdx.x % 128) / 32;
    float* wbuf = reinterpret_cast<float*>(smem + STAGES * C::STAGE_BYTES) + (cw * 4 + warp) * WBUF;
    // Stage s is free again for this warp (its wgmma reads are complete).
    auto release = [&](int s) {
        if (lane == 0) mbar_arrive(&empty[s]);
    };
    float scale = 1.f, amax = 0.f;
    if (SCALED) scale = *scales.scale_a * *scales.scale_b;
    int g = 0;
    for (int u = blockIdx.x; u < total; u += gridDim.x) {
        const TileCoord tc = coord(u);
        int k_begin;
        const int k_tiles = k_tiles_of<k_elems<T>()>(p, tc.split, k_begin);
        // Consumer cw's 64 rows of A: 64 rows of 128 B (K-major) or the cw-th 64-wide box.
        float acc[BN / 2];
        if constexpr (PROMOTE)
            consume_promoted<T, BN>(acc, ring, g, k_tiles, smem, C::STAGE_BYTES, cw * 8192,
                                    C::A_BYTES, release);
        else
            consume_stages<T, A_K, B_K, BN, false>(acc, ring, g, k_tiles, smem, C::STAGE_BYTES,
                                                   cw * 8192, C::A_BYTES, release);
        // The FP8 kernels track the magnitudes whether or not amax is asked for (one max per
        // value stored; a second copy of the epilogue would double the kernel's code).
        if constexpr (SCALED)
            store_tile<BN>(p, tc, cw, warp, lane, wbuf, acc, scale, AbsMax{&amax});
        else
            store_tile<BN>(p, tc, cw, warp, lane, wbuf, acc, 1.f, NoTrack{});
    }
    if (SCALED) publish_amax(scales.amax, amax);
}

}  // namespace sm90
}  // namespace hk
