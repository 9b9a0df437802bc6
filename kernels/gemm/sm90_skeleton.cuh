// The skeleton of the warp-specialized Hopper kernels (gemm_sm90.cu, conv/conv_sm90.cu), as
// building blocks each kernel instantiates with its own producer and epilogue:
// - Roles: warpgroup 0 produces (loads stages), warpgroups 1 and 2 consume (wgmma), with
//   setmaxnreg moving the producer's registers to the consumers when one block fills the SM.
// - StageRing: STAGES slots of operands in shared memory, "full" mbarriers (a stage's loads have
//   landed) and "empty" ones (its consumers are done with it). The k-step counter g runs on
//   across work units: slot g % STAGES, phase (g / STAGES) & 1.
// - consume_stages: a consumer warpgroup's main loop, 64 x BN f32 accumulators += A * B from
//   128-byte-swizzled stages, one wgmma group kept in flight.
#pragma once
#include "gemm/sm90_tma.cuh"
#include "gemm/wgmma_ops.cuh"

namespace hk {
namespace sm90 {

// Block tiles are BM x BN x BK: BM rows of A (two consumers of 64), BK = 64 (128 bytes of
// f16/bf16: one swizzle row). Threads per block: one producer warpgroup and two consumer
// warpgroups.
constexpr int BM = 128, BK = 64;
constexpr int CONSUMERS = 256, THREADS = 128 + CONSUMERS;

// Which warpgroup this thread is in: 0 produces, 1 and 2 consume.
__device__ __forceinline__ int warpgroup() { return threadIdx.x / 128; }

// Producer: hands registers to the consumers when one block fills the SM (two blocks per SM fit
// in 80 registers a thread each, without setmaxnreg).
template <int CTAS>
__device__ __forceinline__ void producer_registers() {
    if (CTAS == 1) asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
}

// Consumer: takes the registers the producer gave away (the accumulators need them).
template <int CTAS>
__device__ __forceinline__ void consumer_registers() {
    if (CTAS == 1) asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
}

template <int STAGES>
struct StageRing {
    unsigned long long* full;
    unsigned long long* empty;

    // Thread 0 initializes the barriers and makes them visible to TMA; then the block syncs.
    __device__ __forceinline__ void init(unsigned full_arrivals, unsigned empty_arrivals) const {
        if (threadIdx.x == 0) {
            for (int s = 0; s < STAGES; ++s) {
                mbar_init(&full[s], full_arrivals);
                mbar_init(&empty[s], empty_arrivals);
            }
            asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        }
        __syncthreads();
    }

    // Producer: the slot of k-step g, once the consumers have released its previous use.
    __device__ __forceinline__ int acquire(int g) const {
        const int s = g % STAGES;
        if (g >= STAGES) mbar_wait(&empty[s], ((g / STAGES) - 1) & 1);
        return s;
    }

    // Consumer: the slot of k-step g, once its loads have landed.
    __device__ __forceinline__ int wait_full(int g) const {
        const int s = g % STAGES;
        mbar_wait(&full[s], (g / STAGES) & 1);
        return s;
    }
};

// A consumer warpgroup's main loop over k_tiles stages (k-steps g onwards): acc (zeroed here) +=
// A * B, A the 64 x BK tile at stage(slot) + a_offset, B the BN x BK tile at stage(slot) +
// b_offset, each K-major or MN-major. release(slot) runs once the wgmma reads of a slot are
// complete. PROXY_FENCE: the stage was written through the generic proxy (cp.async), which
// wgmma's async proxy must see first.
template <typename T, bool A_K, bool B_K, int BN, bool PROXY_FENCE, int STAGES, class Release>
__device__ __forceinline__ void consume_stages(float (&acc)[BN / 2], const StageRing<STAGES>& ring,
                                               int& g, int k_tiles, const unsigned char* smem,
                                               int stage_bytes, int a_offset, int b_offset,
                                               Release release) {
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.f;
    for (int kt = 0; kt < k_tiles; ++kt, ++g) {
        const int s = ring.wait_full(g);
        if (PROXY_FENCE) asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        const unsigned char* a = smem + s * stage_bytes + a_offset;
        const unsigned char* b = smem + s * stage_bytes + b_offset;
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk)
            wgmma_step<T, A_K ? 0 : 1, B_K ? 0 : 1, BN>(
                acc, desc_sw128<A_K>(a + k_step_bytes<A_K>(kk)),
                desc_sw128<B_K>(b + k_step_bytes<B_K>(kk)));
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        // Keep this step's group in flight; the previous step's is done, so its stage is free.
        asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
        if (kt > 0) release((g - 1) % STAGES);
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    if (k_tiles > 0) release((g - 1) % STAGES);
}

}  // namespace sm90
}  // namespace hk
