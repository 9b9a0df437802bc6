#!/usr/bin/env python3
"""Writes kernels/gemm/wgmma_ops.cuh: the wgmma.mma_async m64nNk16 wrappers of the 16-bit types
(N = 256 for the GEMM; 128 and 64 for the convolution's narrower tiles) and the m64nNk32 ones of
the FP8 types (N = 256, 128 and 64, for the FP8 GEMM and its promoted partial sums), whose inline PTX names all N / 2 accumulator
registers (too long to keep correct by hand), and `wgmma_step<T, TRANS_A, TRANS_B, N>`, which
picks the wrapper for an input type and N: one 32-byte K step of both operands either way.

    python3 scripts/gen_wgmma.py && python3 scripts/ptx.py gen
"""
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "kernels" / "gemm" / "wgmma_ops.cuh"


def wrapper(name: str, ptx_type: str, n: int = 256) -> str:
    acc = n // 2
    regs = ", ".join(f"%{i}" for i in range(acc))
    outs = ", ".join(f'"+f"(d[{i}])' for i in range(acc))
    return f'''template <int TRANS_A, int TRANS_B>
__device__ __forceinline__ void wgmma_m64n{n}k16_{name}(float (&d)[{acc}], unsigned long long desc_a,
                                                  unsigned long long desc_b) {{
    asm volatile(
        "{{\\n"
        ".reg .pred p;\\n"
        "setp.ne.b32 p, %{acc + 2}, 0;\\n"
        "wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{ptx_type}.{ptx_type} "
        "{{{regs}}}, "
        "%{acc}, %{acc + 1}, p, 1, 1, %{acc + 3}, %{acc + 4};\\n"
        "}}\\n"
        : {outs}
        : "l"(desc_a), "l"(desc_b), "r"(1), "n"(TRANS_A), "n"(TRANS_B));
}}
'''


def fp8_wrapper(ptx_type: str, n: int) -> str:
    """FP8 operands are K-major only: the instruction has no transpose immediates. scale_d = 0
    overwrites d instead of adding to it."""
    acc = n // 2
    regs = ", ".join(f"%{i}" for i in range(acc))
    outs = ", ".join(f'"+f"(d[{i}])' for i in range(acc))
    return f'''__device__ __forceinline__ void wgmma_m64n{n}k32_{ptx_type}(float (&d)[{acc}], unsigned long long desc_a,
                                                   unsigned long long desc_b, int scale_d) {{
    asm volatile(
        "{{\\n"
        ".reg .pred p;\\n"
        "setp.ne.b32 p, %{acc + 2}, 0;\\n"
        "wgmma.mma_async.sync.aligned.m64n{n}k32.f32.{ptx_type}.{ptx_type} "
        "{{{regs}}}, "
        "%{acc}, %{acc + 1}, p, 1, 1;\\n"
        "}}\\n"
        : {outs}
        : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}}
'''


def fp8_rs_wrapper(ptx_type: str, n: int) -> str:
    """A from registers (four .b32 of four FP8 codes each: the m16n8k32 A fragment of the
    thread's warp's 16 rows), B from shared memory."""
    acc = n // 2
    regs = ", ".join(f"%{i}" for i in range(acc))
    outs = ", ".join(f'"+f"(d[{i}])' for i in range(acc))
    a = ", ".join(f"%{acc + i}" for i in range(4))
    return f'''__device__ __forceinline__ void wgmma_m64n{n}k32_{ptx_type}_rs(float (&d)[{acc}], const unsigned (&a)[4],
                                                      unsigned long long desc_b, int scale_d) {{
    asm volatile(
        "{{\\n"
        ".reg .pred p;\\n"
        "setp.ne.b32 p, %{acc + 5}, 0;\\n"
        "wgmma.mma_async.sync.aligned.m64n{n}k32.f32.{ptx_type}.{ptx_type} "
        "{{{regs}}}, "
        "{{{a}}}, %{acc + 4}, p, 1, 1;\\n"
        "}}\\n"
        : {outs}
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
}}
'''


DISPATCH = """// One 32-byte K step of both operands (k16 of __half or __nv_bfloat16, k32 of Fp8E4M3 or
// Fp8E5M2, which are K-major only) for input type T and N: d += A * B, or, for FP8 with
// scale_d = 0, d = A * B (the 16-bit steps always add).
template <typename T, int TRANS_A, int TRANS_B, int N>
__device__ __forceinline__ void wgmma_step(float (&d)[N / 2], unsigned long long desc_a,
                                           unsigned long long desc_b, int scale_d = 1) {
    constexpr bool BF16 = IsBf16<T>::value;
    if constexpr (Fp8Kind<T>::value != 0) {
        static_assert(TRANS_A == 0 && TRANS_B == 0, "FP8 operands are K-major");
        constexpr bool E5M2 = Fp8Kind<T>::value == 2;
        if constexpr (N == 256) {
            if constexpr (E5M2) wgmma_m64n256k32_e5m2(d, desc_a, desc_b, scale_d);
            else wgmma_m64n256k32_e4m3(d, desc_a, desc_b, scale_d);
        } else if constexpr (N == 128) {
            if constexpr (E5M2) wgmma_m64n128k32_e5m2(d, desc_a, desc_b, scale_d);
            else wgmma_m64n128k32_e4m3(d, desc_a, desc_b, scale_d);
        } else {
            static_assert(N == 64, "FP8: N is 64, 128 or 256");
            if constexpr (E5M2) wgmma_m64n64k32_e5m2(d, desc_a, desc_b, scale_d);
            else wgmma_m64n64k32_e4m3(d, desc_a, desc_b, scale_d);
        }
    } else if constexpr (N == 256) {
        if constexpr (BF16) wgmma_m64n256k16_bf16<TRANS_A, TRANS_B>(d, desc_a, desc_b);
        else wgmma_m64n256k16_f16<TRANS_A, TRANS_B>(d, desc_a, desc_b);
    } else if constexpr (N == 128) {
        if constexpr (BF16) wgmma_m64n128k16_bf16<TRANS_A, TRANS_B>(d, desc_a, desc_b);
        else wgmma_m64n128k16_f16<TRANS_A, TRANS_B>(d, desc_a, desc_b);
    } else {
        static_assert(N == 64, "N is 64, 128 or 256");
        if constexpr (BF16) wgmma_m64n64k16_bf16<TRANS_A, TRANS_B>(d, desc_a, desc_b);
        else wgmma_m64n64k16_f16<TRANS_A, TRANS_B>(d, desc_a, desc_b);
    }
}

// One k32 step of FP8 with A from registers (a: this thread's A fragment, ldmatrix_a_fp8) and
// B from shared memory, N = 128: d += A * B, or d = A * B with scale_d = 0.
template <typename T, int N>
__device__ __forceinline__ void wgmma_step_rs(float (&d)[N / 2], const unsigned (&a)[4],
                                              unsigned long long desc_b, int scale_d) {
    static_assert(Fp8Kind<T>::value != 0 && N == 128, "A from registers: FP8, N = 128");
    if constexpr (Fp8Kind<T>::value == 2) wgmma_m64n128k32_e5m2_rs(d, a, desc_b, scale_d);
    else wgmma_m64n128k32_e4m3_rs(d, a, desc_b, scale_d);
}
"""


def main():
    text = (
        "// wgmma.mma_async with f32 accumulators, operands from shared memory, D += A * B: m64nNk16\n"
        "// of f16/bf16 (N = 256, 128, 64; TRANS_A / TRANS_B = 1 for an operand stored MN-major) and\n"
        "// m64nNk32 of FP8 (N = 256, 128, 64; K-major; N = 128 also with A from registers). Written\n"
        "// out because the instruction names all N / 2 accumulator registers. wgmma_step picks one by\n"
        "// type and N, wgmma_step_rs the FP8 ones with A from registers.\n"
        "// Generated by scripts/gen_wgmma.py: edit that, not this file.\n"
        "#pragma once\n#include \"gemm/gemm_params.cuh\"\n\nnamespace hk {\nnamespace sm90 {\n\n"
        + wrapper("f16", "f16") + "\n" + wrapper("bf16", "bf16")
        + "".join("\n" + wrapper(t, t, n) for n in (128, 64) for t in ("f16", "bf16"))
        + "".join("\n" + fp8_wrapper(t, n) for n in (256, 128, 64) for t in ("e4m3", "e5m2"))
        + "".join("\n" + fp8_rs_wrapper(t, 128) for t in ("e4m3", "e5m2"))
        + "\n" + DISPATCH
        + "\n}  // namespace sm90\n}  // namespace hk\n"
    )
    OUT.write_text(text)


if __name__ == "__main__":
    main()
