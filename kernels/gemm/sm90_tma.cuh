// Hopper building blocks shared by the TMA + wgmma kernels (gemm_sm90.cu, conv/conv_sm90.cu):
// the tensor-map parameter type, mbarrier wait/arrive, TMA tile loads and the 128-byte-swizzle
// shared-memory matrix descriptors that wgmma reads.
#pragma once
#include "gemm/gemm_params.cuh"

namespace hk {
namespace sm90 {

// A CUtensorMap, passed by value as a __grid_constant__ kernel parameter.
struct __align__(64) TmaDesc {
    unsigned long long opaque[16];
};

// The block's dynamic shared memory, aligned up to 1024 bytes (128-byte swizzle atoms must start
// there); traps when the launch gave less than `need` bytes (the 1 KiB of slack included).
__device__ __forceinline__ unsigned char* swizzle_smem(unsigned need) {
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    unsigned dynamic_smem;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dynamic_smem));
    if (dynamic_smem < need) __trap();
    return reinterpret_cast<unsigned char*>(
        (reinterpret_cast<unsigned long long>(smem_raw) + 1023) & ~1023ull);
}

__device__ __forceinline__ void mbar_init(unsigned long long* bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count));
}

__device__ __forceinline__ void mbar_expect_tx(unsigned long long* bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)),
                 "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void mbar_arrive(unsigned long long* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}

__device__ __forceinline__ void mbar_wait(unsigned long long* bar, unsigned parity) {
    unsigned done = 0;
    do {
        asm volatile(
            "{\n"
            ".reg .pred p;\n"
            "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            "selp.u32 %0, 1, 0, p;\n"
            "}\n"
            : "=r"(done)
            : "r"(smem_u32(bar)), "r"(parity)
            : "memory");
    } while (!done);
}

// Loads box (c0, c1, c2) of a 3-D tensor map into shared memory, completing on `bar`.
__device__ __forceinline__ void tma_load_3d(void* dst, const TmaDesc* map, int c0, int c1, int c2,
                                            unsigned long long* bar) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(smem_u32(dst)),
        "l"(reinterpret_cast<unsigned long long>(map)), "r"(c0), "r"(c1), "r"(c2),
        "r"(smem_u32(bar))
        : "memory");
}

// Shared-memory matrix descriptor with 128-byte swizzle. K-major tiles: rows of 64 K elements
// (128 B), 8-row atoms 1024 B apart (SBO), no leading offset. MN-major tiles (boxes of 64 K rows
// of 64 MN elements): 8-row atoms 1024 B apart along K (SBO), the next 64 MN elements one box
// (64 x 128 B = 8 KiB) further on (LBO).
template <bool K_MAJOR>
__device__ __forceinline__ unsigned long long desc_sw128(const void* p) {
    const unsigned long long addr = smem_u32(p);
    const unsigned long long lbo = K_MAJOR ? 1 : (8192 >> 4);
    return ((addr & 0x3FFFF) >> 4) | (lbo << 16) | ((1024ull >> 4) << 32) | (1ull << 62);
}

// Where k16 step kk of an operand tile starts: 32 B into each 128-B row (K-major), or 16 rows of
// 128 B further down (MN-major).
template <bool K_MAJOR>
__device__ __forceinline__ int k_step_bytes(int kk) {
    return K_MAJOR ? kk * 32 : kk * 16 * 128;
}

}  // namespace sm90
}  // namespace hk
