// Programmatic dependent launch (Hopper and newer).
//
// The crate launches kernels that include this header with the "programmatic stream
// serialization" attribute on compute capability 9.0 and newer: the GPU may then start such a
// kernel while the kernel before it on the stream is still running, hiding the launch latency.
// A kernel that opts in MUST call `hk::pdl_wait()` before it touches global memory (reads or
// writes): it returns once every earlier kernel on the stream has completed and its writes are
// visible. `hk::pdl_launch_dependents()` lets the next kernel be scheduled early; calling it is
// optional (without it the next kernel launches when this one completes).
// Both compile to nothing before sm_90, where the crate launches without the attribute.
#pragma once

namespace hk {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

}  // namespace hk
