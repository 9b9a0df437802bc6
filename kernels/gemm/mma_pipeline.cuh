// The tensor-core GEMM main loop shared by the compute_75 and compute_80 paths.
//
// Block tile BM x BN, K step BK = 32, warp tile WM x WN, STAGES shared-memory stages.
// - Global -> shared: 16-byte chunks. compute_80: cp.async with zero-fill past the edges, a
//   STAGES-deep pipeline (Sm80). compute_75: plain 16-byte loads and stores (Sm75).
//   ALIGNED kernels assume 16-byte aligned bases and leading dimensions that are multiples of
//   8 elements; GENERAL kernels load element by element and assume nothing.
// - Shared memory: each tile keeps the matrix's contiguous dimension contiguous, in 16-byte
//   chunks XOR-swizzled by row so that both the chunk writes and ldmatrix's 8-row reads are free
//   of bank conflicts.
// - Shared -> registers: ldmatrix.x4 (.trans for operands stored M- or N-contiguous, which gives
//   all four layout combinations from one main loop).
// - Math: mma.sync m16n8k16 (Sm80; f16 or bf16) or two m16n8k8 (Sm75; f16), f32 accumulators,
//   or f16 ones for f16 inputs (ComputeType::F16).
// - Epilogue straight from the accumulators (gemm_params.cuh), or f32 partials for split-K.
#pragma once
#include "gemm/gemm_params.cuh"

namespace hk {

struct Sm80 {
    static constexpr bool kAsyncCopy = true;
    static constexpr bool kMmaK16 = true;
};
struct Sm75 {
    static constexpr bool kAsyncCopy = false;
    static constexpr bool kMmaK16 = false;
};


// Element offset of 16-byte chunk c of row r in a tile with CHUNKS chunks per row.
template <int CHUNKS>
__device__ __forceinline__ int swizzle(int r, int c) {
    const int x = CHUNKS >= 8 ? (r & 7) : ((r >> 1) & 3);
    return r * CHUNKS * 8 + ((c ^ x) << 3);
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src, int bytes) {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(bytes));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// Copies the first `avail` (0..8) elements at `src` into the 16-byte chunk at `dst`, zeros after
// them, one element at a time (no alignment assumed).
template <typename T>
__device__ __forceinline__ void copy_chunk_checked(T* dst, const T* src, int avail) {
    unsigned short v[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = e < avail ? reinterpret_cast<const unsigned short*>(src)[e] : 0;
    uint4 packed;
    packed.x = v[0] | (unsigned(v[1]) << 16);
    packed.y = v[2] | (unsigned(v[3]) << 16);
    packed.z = v[4] | (unsigned(v[5]) << 16);
    packed.w = v[6] | (unsigned(v[7]) << 16);
    *reinterpret_cast<uint4*>(dst) = packed;
}

// The general (unaligned) loader: a ROWS x (CHUNKS * 8) tile whose top-left is (row0, col0) of a
// matrix with rows `ld` elements apart, element by element; elements at or past (row_lim,
// col_lim) read as zero.
template <typename T, int ROWS, int CHUNKS, int THREADS>
__device__ __forceinline__ void load_tile_general(T* tile, const T* g, long long ld, int row0,
                                                  int col0, int row_lim, int col_lim) {
    constexpr int TOTAL = ROWS * CHUNKS;
#pragma unroll
    for (int it = 0; it < (TOTAL + THREADS - 1) / THREADS; ++it) {
        const int i = it * THREADS + static_cast<int>(threadIdx.x);
        if (TOTAL % THREADS != 0 && i >= TOTAL) break;
        const int r = i / CHUNKS, c = i % CHUNKS;
        const int gr = row0 + r, gc = col0 + c * 8;
        const bool in = gr < row_lim && gc < col_lim;
        const int avail = in ? min(8, col_lim - gc) : 0;
        copy_chunk_checked(tile + swizzle<CHUNKS>(r, c), g + (in ? gr * ld + gc : 0), avail);
    }
}

// The aligned loader of one operand tile, with its addressing worked out once per block: each
// thread always copies the same chunk column c of rows r0, r0 + RSTEP, ... (RSTEP a multiple of
// 8, so the swizzle, and hence the shared-memory offset, steps by a constant), and moves its
// global pointer by one K step per tile. Bounds are checked per element row only for the MN
// dimension (fixed per block) and for K only in a tile that crosses k_end.
//   K_ROWS == false: tile rows run along M (or N), columns along K (K-contiguous operand).
//   K_ROWS == true:  tile rows run along K, columns along M (or N).
template <typename T, int ROWS, int CHUNKS, int THREADS, int BK, bool K_ROWS, bool ASYNC>
struct TileLoader {
    static constexpr int RSTEP = THREADS / CHUNKS;
    static constexpr int ITERS = ROWS * CHUNKS / THREADS;
    static_assert(THREADS % CHUNKS == 0 && (ROWS * CHUNKS) % THREADS == 0, "uneven tile split");
    static_assert(RSTEP % 8 == 0, "the swizzle must repeat every RSTEP rows");

    const T* g;          // this thread's first chunk in the current K tile
    const T* base;       // a valid address for zero-byte copies
    long long row_step;  // elements between the thread's successive rows
    long long k_step;    // elements to the next K tile
    int smem0;           // offset of the first chunk in a stage's tile
    int r0, c;
    unsigned row_mask;   // K_ROWS == false: which of the ITERS rows lie inside M (or N)
    int mn_avail;        // K_ROWS == true: elements of the chunk inside M (or N)

    __device__ __forceinline__ TileLoader(const T* mat, long long ld, int mn0, int k_begin,
                                          int mn_lim) {
        c = threadIdx.x % CHUNKS;
        r0 = threadIdx.x / CHUNKS;
        base = mat;
        smem0 = swizzle<CHUNKS>(r0, c);
        row_step = RSTEP * ld;
        if (K_ROWS) {
            g = mat + (k_begin + r0) * ld + mn0 + c * 8;
            k_step = BK * ld;
            mn_avail = max(0, min(8, mn_lim - (mn0 + c * 8)));
            row_mask = 0;
        } else {
            g = mat + (mn0 + r0) * ld + k_begin + c * 8;
            k_step = BK;
            mn_avail = 8;
            row_mask = 0;
#pragma unroll
            for (int it = 0; it < ITERS; ++it)
                if (mn0 + r0 + it * RSTEP < mn_lim) row_mask |= 1u << it;
        }
    }

    // Copies part `part` of `parts` (every parts-th row of the thread's, round robin) of the K
    // tile starting at k0 (the tile this loader points at) into `tile`; the last part moves the
    // loader to the next tile. Splitting a tile's copies over the k16 steps of the main loop
    // keeps the copies from crowding out ldmatrix in the shared-memory pipe.
    __device__ __forceinline__ void load(T* tile, int k0, int k_end, int part = 0, int parts = 1) {
        const bool full_k = k0 + BK <= k_end;
#pragma unroll
        for (int it = 0; it < ITERS; ++it) {
            if (it % parts != part) continue;
            int avail;
            if (K_ROWS) {
                avail = (full_k || k0 + r0 + it * RSTEP < k_end) ? mn_avail : 0;
            } else {
                const int kav = full_k ? 8 : max(0, min(8, k_end - (k0 + c * 8)));
                avail = (row_mask >> it) & 1u ? kav : 0;
            }
            const T* src = avail > 0 ? g + it * row_step : base;
            T* dst = tile + smem0 + it * RSTEP * CHUNKS * 8;
            if (ASYNC) {
                cp_async16(dst, src, avail * static_cast<int>(sizeof(T)));
            } else if (avail == 8) {
                *reinterpret_cast<uint4*>(dst) = __ldg(reinterpret_cast<const uint4*>(src));
            } else {
                copy_chunk_checked(dst, src, avail);
            }
        }
        if (part == parts - 1) g += k_step;
    }
};

__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

// The accumulator fragment of one m16n8 tile: f32 (`float[4]`: rows g and g + 8, columns 2t and
// 2t + 1 of the PTX fragment layout) or, for ComputeType::F16 (f16 inputs only), f16 (`unsigned[2]`,
// each a packed half2 of the same two columns of rows g and g + 8).
using AccF32 = float[4];
using AccF16 = unsigned[2];
template <bool ACC16>
struct AccFrag {
    using type = AccF32;
};
template <>
struct AccFrag<true> {
    using type = AccF16;
};

__device__ __forceinline__ void zero_acc(AccF32& acc) {
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[e] = 0.f;
}
__device__ __forceinline__ void zero_acc(AccF16& acc) { acc[0] = acc[1] = 0u; }

// Columns 2t and 2t + 1 of row g (h = 0) or g + 8 (h = 1), in f32.
__device__ __forceinline__ float2 acc_pair(const AccF32& acc, int h) {
    return make_float2(acc[2 * h], acc[2 * h + 1]);
}
__device__ __forceinline__ float2 acc_pair(const AccF16& acc, int h) {
    return __half22float2(*reinterpret_cast<const __half2*>(&acc[h]));
}

// acc += a * b for one m16n8k16 step (as two m16n8k8 on Sm75), f32 accumulators.
// For FP8 pairs (Fp8Pair), one m16n8k32 FP8 step: the same fragment bytes (compute_89).
template <typename T, typename Policy>
__device__ __forceinline__ void mma16816(AccF32& acc, const unsigned (&a)[4], unsigned b0,
                                         unsigned b1) {
    if constexpr (Fp8Kind<T>::value != 0) {
#if __CUDA_ARCH__ >= 890
        if constexpr (Fp8Kind<T>::value == 2) {
            asm volatile(
                "mma.sync.aligned.m16n8k32.row.col.f32.e5m2.e5m2.f32 {%0,%1,%2,%3}, "
                "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
        } else {
            asm volatile(
                "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, "
                "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
        }
#endif
    } else if constexpr (Policy::kMmaK16) {
        if constexpr (IsBf16<T>::value) {
            asm volatile(
                "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
        } else {
            asm volatile(
                "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
        }
    } else {
        asm volatile(
            "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
            : "r"(a[0]), "r"(a[1]), "r"(b0));
        asm volatile(
            "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
            : "r"(a[2]), "r"(a[3]), "r"(b1));
    }
}

// The same with f16 accumulators (f16 inputs only): twice the tensor rate of f32 accumulation
// on GeForce cards, the same on the data-center ones.
template <typename T, typename Policy>
__device__ __forceinline__ void mma16816(AccF16& acc, const unsigned (&a)[4], unsigned b0,
                                         unsigned b1) {
    static_assert(!IsBf16<T>::value, "bf16 products accumulate in f32 only");
    if constexpr (Policy::kMmaK16) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 {%0,%1}, {%2,%3,%4,%5}, "
            "{%6,%7}, {%0,%1};\n"
            : "+r"(acc[0]), "+r"(acc[1])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile(
            "mma.sync.aligned.m16n8k8.row.col.f16.f16.f16.f16 {%0,%1}, {%2,%3}, {%4}, {%0,%1};\n"
            : "+r"(acc[0]), "+r"(acc[1])
            : "r"(a[0]), "r"(a[1]), "r"(b0));
        asm volatile(
            "mma.sync.aligned.m16n8k8.row.col.f16.f16.f16.f16 {%0,%1}, {%2,%3}, {%4}, {%0,%1};\n"
            : "+r"(acc[0]), "+r"(acc[1])
            : "r"(a[2]), "r"(a[3]), "r"(b1));
    }
}

// The A and B fragments of k16 step kk of the stage at (sa, sb) for the warp whose tile starts at
// (wm0, wn0): ldmatrix.x4 for K-contiguous operand tiles (A_KC, B_KC), .trans for M- or
// N-contiguous ones (tile rows along K).
template <int BM, int BN, int BK, bool A_KC, bool B_KC, typename T, int MT, int NT>
__device__ __forceinline__ void mma_fragments(const T* sa, const T* sb, int kk, int wm0, int wn0,
                                              unsigned (&af)[MT][4], unsigned (&bf)[NT][2]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        if constexpr (A_KC) {
            const int row = wm0 + mt * 16 + (lane & 15);
            const int col = kk * 16 + (lane >> 4) * 8;
            ldmatrix_x4(af[mt], sa + swizzle<BK / 8>(row, col >> 3));
        } else {
            const int j = lane >> 3, rr = lane & 7;
            const int k = kk * 16 + (j >> 1) * 8 + rr;
            const int m = wm0 + mt * 16 + (j & 1) * 8;
            ldmatrix_x4_trans(af[mt], sa + swizzle<BM / 8>(k, m >> 3));
        }
    }
#pragma unroll
    for (int np = 0; np < NT / 2; ++np) {
        unsigned r[4];
        const int j = lane >> 3, rr = lane & 7;
        if constexpr (B_KC) {
            const int n = wn0 + np * 16 + (j >> 1) * 8 + rr;
            const int k = kk * 16 + (j & 1) * 8;
            ldmatrix_x4(r, sb + swizzle<BK / 8>(n, k >> 3));
        } else {
            const int k = kk * 16 + (j & 1) * 8 + rr;
            const int n = wn0 + np * 16 + (j >> 1) * 8;
            ldmatrix_x4_trans(r, sb + swizzle<BN / 8>(k, n >> 3));
        }
        bf[2 * np][0] = r[0];
        bf[2 * np][1] = r[1];
        bf[2 * np + 1][0] = r[2];
        bf[2 * np + 1][1] = r[3];
    }
}

// Stores the block tile at tc from the warps' accumulators through shared memory (the pipeline's,
// free once the main loop returns), in two passes of half of each warp's rows: the warps park
// their accumulators (rows padded by 8 floats: no bank conflicts), then all threads walk the
// block's rows, so global stores are coalesced and the epilogue code exists once. Two columns
// at a time (store_result: the epilogue, or split-K partials), or, with VEC8 where p.reserved
// says D, C and the bias allow it (the host's vec8_ok; no split-K), eight: one 16-byte store
// (f16/bf16 out) and one bias load per eight outputs (the implicit-GEMM convolution's). GEMM row r
// is stored at D's row `row_map(r)` (split-K partials need the identity).
// The identity row map of store_tile.
struct SameRow {
    __device__ __forceinline__ int operator()(int r) const { return r; }
};

// The accumulators are multiplied by `scale` on the way (the FP8 kernels' scales); track sees
// every value the epilogue stores.
template <int BM, int BN, int WM, int WN, bool VEC8 = false, int MT, int NT, typename Acc,
          typename RowMap = SameRow, typename Track = NoTrack>
__device__ __forceinline__ void store_tile(const GemmParams& p, const TileCoord& tc,
                                           const Acc (&acc)[MT][NT], RowMap row_map = {},
                                           float scale = 1.f, Track track = {}) {
    constexpr int WARPS_M = BM / WM, THREADS = WARPS_M * (BN / WN) * 32;
    constexpr int HALF_MT = MT / 2, PASS_ROWS = BM / 2, SROW = BN + 8;
    static_assert(MT % 2 == 0, "two epilogue passes need an even number of m16 tiles per warp");
    extern __shared__ __align__(128) unsigned char smem_raw[];
    float* stage_out = reinterpret_cast<float*>(smem_raw);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wn0 = (warp / WARPS_M) * WN;
    const int g = lane >> 2, t = lane & 3;
    const bool vec8 = VEC8 && p.splits == 1 && p.reserved != 0;
    // The output row of local row lr in pass `pass`: warp_m's block of WM / 2 rows, then the
    // row inside it.
    auto row = [&](int lr, int pass) {
        return tc.m0 + (lr / (WM / 2)) * WM + pass * (WM / 2) + lr % (WM / 2);
    };
#pragma unroll
    for (int pass = 0; pass < 2; ++pass) {
        __syncthreads();
#pragma unroll
        for (int i = 0; i < HALF_MT; ++i) {
            const int mt = pass * HALF_MT + i;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int lr = (warp % WARPS_M) * (WM / 2) + i * 16 + g + 8 * h;
                    const int col = wn0 + nt * 8 + 2 * t;
                    const float2 v = acc_pair(acc[mt][nt], h);
                    *reinterpret_cast<float2*>(stage_out + lr * SROW + col) =
                        make_float2(scale * v.x, scale * v.y);
                }
            }
        }
        __syncthreads();
        if (vec8) {
            for (int idx = threadIdx.x; idx < PASS_ROWS * (BN / 8); idx += THREADS) {
                const int lr = idx / (BN / 8), col = (idx % (BN / 8)) * 8;
                const int r = row(lr, pass), c = tc.n0 + col;
                if (r >= p.m || c >= p.n) continue;
                const float4 lo = *reinterpret_cast<const float4*>(stage_out + lr * SROW + col);
                const float4 hi = *reinterpret_cast<const float4*>(stage_out + lr * SROW + col + 4);
                float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
                const int dr = row_map(r);
                if (c + 8 <= p.n) {
                    epilogue8(p, tc.batch, dr, c, v, track);
                } else {
#pragma unroll
                    for (int e = 0; e < 8; e += 2)
                        if (c + e < p.n) epilogue2(p, tc.batch, dr, c + e, v[e], v[e + 1], track);
                }
            }
        } else {
            // Column pairs, consecutive threads on consecutive pairs (coalesced split-K partials).
            for (int idx = threadIdx.x; idx < PASS_ROWS * (BN / 2); idx += THREADS) {
                const int lr = idx / (BN / 2), col = (idx % (BN / 2)) * 2;
                const int r = row(lr, pass), c = tc.n0 + col;
                if (r >= p.m || c >= p.n) continue;
                const float2 v = *reinterpret_cast<const float2*>(stage_out + lr * SROW + col);
                store_result(p, tc.split, tc.batch, row_map(r), c, v.x, v.y, track);
            }
        }
    }
}

// Dynamic shared memory a kernel needs: the pipeline's stages, or the epilogue's staging,
// whichever is larger. src/ops/matmul computes the same.
template <int BM, int BN, int BK, int STAGES, typename T>
constexpr int gemm_smem_bytes() {
    const int pipeline = STAGES * (BM + BN) * BK * static_cast<int>(sizeof(T));
    const int epilogue = (BM / 2) * (BN + 8) * 4;
    return pipeline > epilogue ? pipeline : epilogue;
}

// The multistage main loop of the mma.sync kernels (the GEMM's and the implicit-GEMM
// convolution's): zeroes `acc`, fills the first STAGES_USED - 1 stages, then walks the k-tiles
// with double-buffered fragments. The ldmatrix of step kk + 1 is issued before the mma of step kk
// (both are volatile asm, so the compiler keeps that order); the tile STAGES_USED - 1 ahead goes
// to the stage read one tile ago (free since the last barrier), its copies spread over this
// tile's k16 steps; before the last step of a tile the block waits for the next tile and
// synchronizes, so that the next tile's first fragments load under the last mma. Returns with no
// copy in flight. `load_stage(stage, k0, part = 0, parts = 1)` issues (part of) a stage's
// copies; `load_fragments(sa, sb, kk, af, bf)` loads the fragments of k16 step kk. `Acc` is the
// accumulator fragment, AccF32 or AccF16.
template <typename T, typename Policy, int MT, int NT, int BK, int STAGES_USED, int A_ELEMS,
          int STAGE, typename LoadStage, typename LoadFragments, typename Acc>
__device__ __forceinline__ void mma_mainloop(const T* smem, int k_tiles, int k_begin,
                                             LoadStage& load_stage,
                                             LoadFragments& load_fragments,
                                             Acc (&acc)[MT][NT]) {
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j) zero_acc(acc[i][j]);

#pragma unroll
    for (int s = 0; s < STAGES_USED - 1; ++s) {
        if (s < k_tiles) load_stage(s, k_begin + s * BK);
        cp_async_commit();
    }

    constexpr int KSTEPS = BK / 16;
    static_assert(KSTEPS % 2 == 0, "the fragment buffers alternate across tiles");
    unsigned af[2][MT][4];
    unsigned bf[2][NT][2];
    cp_async_wait<STAGES_USED - 2>();
    __syncthreads();
    if (k_tiles > 0) load_fragments(smem, smem + A_ELEMS, 0, af[0], bf[0]);
    for (int kt = 0; kt < k_tiles; ++kt) {
        const T* sa = smem + (kt % STAGES_USED) * STAGE;
        const T* sb = sa + A_ELEMS;
        const int next = kt + STAGES_USED - 1;
#pragma unroll
        for (int kk = 0; kk < KSTEPS; ++kk) {
            if (next < k_tiles) load_stage(next % STAGES_USED, k_begin + next * BK, kk, KSTEPS);
            if (kk == KSTEPS - 1) {
                cp_async_commit();
                cp_async_wait<STAGES_USED - 2>();
                __syncthreads();
                if (kt + 1 < k_tiles) {
                    const T* na = smem + ((kt + 1) % STAGES_USED) * STAGE;
                    load_fragments(na, na + A_ELEMS, 0, af[0], bf[0]);
                }
            } else {
                load_fragments(sa, sb, kk + 1, af[(kk + 1) & 1], bf[(kk + 1) & 1]);
            }
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
                    mma16816<T, Policy>(acc[mt][nt], af[kk & 1][mt], bf[kk & 1][nt][0],
                                        bf[kk & 1][nt][1]);
        }
    }
    cp_async_wait<0>();
}

// SCALED (the FP8 kernels, T an Fp8Pair): the accumulators times the two scales, the 16-byte
// epilogue, and D's amax.
template <typename T, int BM, int BN, int BK, int WM, int WN, int STAGES, bool A_KC, bool B_KC,
          bool ALIGNED, typename Policy, bool ACC16, bool SCALED = false>
__device__ __forceinline__ void gemm_mainloop(const GemmParams& p, const Fp8Scales& scales = {}) {
    static_assert(BK == 32 || BK == 64, "the swizzle handles rows of 4 or 8 chunks");
    constexpr int WARPS_M = BM / WM, WARPS_N = BN / WN, THREADS = WARPS_M * WARPS_N * 32;
    constexpr int MT = WM / 16, NT = WN / 8;
    constexpr int A_ELEMS = BM * BK, B_ELEMS = BN * BK, STAGE = A_ELEMS + B_ELEMS;
    constexpr bool ASYNC = Policy::kAsyncCopy && ALIGNED;
    constexpr int STAGES_USED = Policy::kAsyncCopy ? STAGES : 2;

    extern __shared__ __align__(128) unsigned char smem_raw[];
    T* smem = reinterpret_cast<T*>(smem_raw);
    {
        unsigned dynamic_smem;
        asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_smem));
        if (dynamic_smem < static_cast<unsigned>(gemm_smem_bytes<BM, BN, BK, STAGES_USED, T>())) __trap();
    }

    const TileCoord tc = tile_coord<BM, BN>(p);
    const T* A = static_cast<const T*>(p.a) + tc.batch * p.stride_a;
    const T* B = static_cast<const T*>(p.b) + tc.batch * p.stride_b;
    const int k_begin = tc.split * p.k_per_split;
    const int k_end = min(p.k, k_begin + p.k_per_split);
    const int k_tiles = k_end > k_begin ? (k_end - k_begin + BK - 1) / BK : 0;

    const int warp = threadIdx.x >> 5;
    const int wm0 = (warp % WARPS_M) * WM, wn0 = (warp / WARPS_M) * WN;

    // Aligned kernels use the precomputed loaders; general ones check every element.
    using LoaderA = TileLoader<T, A_KC ? BM : BK, A_KC ? BK / 8 : BM / 8, THREADS, BK, !A_KC, ASYNC>;
    using LoaderB = TileLoader<T, B_KC ? BN : BK, B_KC ? BK / 8 : BN / 8, THREADS, BK, !B_KC, ASYNC>;
    LoaderA loader_a(A, p.lda, tc.m0, k_begin, p.m);
    LoaderB loader_b(B, p.ldb, tc.n0, k_begin, p.n);
    // Loads part `part` of `parts` of stage `stage` with the K tile starting at k0; aligned
    // loaders must be called for consecutive tiles (they advance themselves). The general path
    // loads the whole stage with part 0.
    auto load_stage = [&](int stage, int k0, int part = 0, int parts = 1) {
        T* sa = smem + stage * STAGE;
        T* sb = sa + A_ELEMS;
        if constexpr (ALIGNED) {
            loader_a.load(sa, k0, k_end, part, parts);
            loader_b.load(sb, k0, k_end, part, parts);
        } else if (part == 0) {
            if constexpr (A_KC)
                load_tile_general<T, BM, BK / 8, THREADS>(sa, A, p.lda, tc.m0, k0, p.m, k_end);
            else
                load_tile_general<T, BK, BM / 8, THREADS>(sa, A, p.lda, k0, tc.m0, k_end, p.m);
            if constexpr (B_KC)
                load_tile_general<T, BN, BK / 8, THREADS>(sb, B, p.ldb, tc.n0, k0, p.n, k_end);
            else
                load_tile_general<T, BK, BN / 8, THREADS>(sb, B, p.ldb, k0, tc.n0, k_end, p.n);
        }
    };

    // The A and B fragments of k16 step kk of the stage at (sa, sb).
    auto load_fragments = [&](const T* sa, const T* sb, int kk, unsigned (&af)[MT][4],
                              unsigned (&bf)[NT][2]) {
        mma_fragments<BM, BN, BK, A_KC, B_KC>(sa, sb, kk, wm0, wn0, af, bf);
    };

    typename AccFrag<ACC16>::type acc[MT][NT];
    mma_mainloop<T, Policy, MT, NT, BK, STAGES_USED, A_ELEMS, STAGE>(smem, k_tiles, k_begin,
                                                                     load_stage, load_fragments,
                                                                     acc);

    if constexpr (SCALED) {
        float amax = 0.f;
        const float scale = *scales.scale_a * *scales.scale_b;
        store_tile<BM, BN, WM, WN, true>(p, tc, acc, SameRow{}, scale, AbsMax{&amax});
        publish_amax(scales.amax, amax);
    } else {
        store_tile<BM, BN, WM, WN>(p, tc, acc);
    }
}

}  // namespace hk

// One extern "C" kernel per (input and accumulation, tile, layout, alignment). Names:
//   gemm_<arch>_<f16|f16_acc16|bf16>_<BM>x<BN>x<BK>x<STAGES>_<ar|ac><br|bc>_<aligned|general>
// ar/ac: A row-/column-major; br/bc: B row-/column-major; f16_acc16: f16 accumulators
// (ACC16), the others f32.
#define HK_GEMM_KERNEL(ARCH, POLICY, TNAME, T, ACC16, BM, BN, BK, WM, WN, ST, MINB, LAYOUT, AKC,  \
                       BKC, ALNAME, AL)                                                        \
    extern "C" __global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32, MINB)              \
        gemm_##ARCH##_##TNAME##_##BM##x##BN##x##BK##x##ST##_##LAYOUT##_##ALNAME(hk::GemmParams p) { \
        hk::gemm_mainloop<T, BM, BN, BK, WM, WN, ST, AKC, BKC, AL, hk::POLICY, ACC16>(p);      \
    }

#define HK_GEMM_LAYOUTS(ARCH, POLICY, TNAME, T, ACC16, BM, BN, BK, WM, WN, ST, MINB, ALNAME, AL)        \
    HK_GEMM_KERNEL(ARCH, POLICY, TNAME, T, ACC16, BM, BN, BK, WM, WN, ST, MINB, arbr, true, false, ALNAME, AL)  \
    HK_GEMM_KERNEL(ARCH, POLICY, TNAME, T, ACC16, BM, BN, BK, WM, WN, ST, MINB, arbc, true, true, ALNAME, AL)   \
    HK_GEMM_KERNEL(ARCH, POLICY, TNAME, T, ACC16, BM, BN, BK, WM, WN, ST, MINB, acbr, false, false, ALNAME, AL) \
    HK_GEMM_KERNEL(ARCH, POLICY, TNAME, T, ACC16, BM, BN, BK, WM, WN, ST, MINB, acbc, false, true, ALNAME, AL)
