// hikube-archs: compute_70 compute_75 compute_80 compute_90a
//
// Training kernels: what a mixed-precision training step needs around its GEMMs. Forward and
// backward products run on the GEMM kernels (bias and ReLU fused); these kernels do the rest.
//
// The loss-scaling state is four floats in device memory, so that a captured graph reads and
// updates it without the host: state[0] = loss scale, state[1] = steps since the last overflow,
// state[2] = 1 when a gradient of this step is not finite (else 0), state[3] = steps skipped.
// The counters are floats, exact up to 2^24 and stuck there (x + 1 == x): the host caps
// growth_interval at 2^24 so that state[1] reaches it; state[3] (and state[1] when growth is
// off) stop at 2^24, the documented range.
//
// rows and cols are at most INT_MAX - 64 (checked by the host, ops/train.rs): the int counters
// below step past the end by up to 32 (a warp's columns) or 8 (a block's rows) and must not
// overflow. They stay signed so that the compiler may unroll the loops.
//
// softmax_xent_<t>(rows, cols, logits f32, labels u32, state, grad <t>, row_loss f32)
//     One warp per row. grad = scale · (softmax(logits) − onehot(label)) / rows (the gradient of
//     the mean loss, scaled); row_loss = −log softmax(logits)[label], unscaled. state may be null
//     (scale 1). A label ≥ cols makes that row's loss NaN and its gradient NaN, so the overflow
//     check skips the step instead of training on garbage.
// relu_backward_<t>(n, y, dy): dy[i] = y[i] > 0 ? dy[i] : 0, with y the ReLU's output.
// bias_grad_<t>(rows, cols, dy, db f32): db[j] = Σ_i dy[i, j] (row-major dy). Blocks of 32×8
//     threads own 32 columns each; warps read 32 consecutive columns of a row (coalesced).
// cast_f32_<t>(n, src f32, dst <t>): round to nearest even.
// nonfinite_check_f32(n, g, state): state[2] = 1 if any g[i] is inf or NaN.
// sgd_step_<t>(n, w f32, v f32, g f32, w_lp <t> or null, lr, momentum, weight_decay, state):
//     SGD with momentum (PyTorch's form) on f32 master weights, gradients unscaled by state[0]:
//     d = g / scale + weight_decay · w;  v = momentum · v + d;  w -= lr · v;  w_lp = <t>(w).
//     Nothing is written when state[2] is set (the step is skipped).
// loss_scale_update(state, growth_interval): one thread. After an overflow: halve the scale,
//     count a skipped step, restart the count; else count the step and double the scale after
//     growth_interval good steps in a row. Clears state[2] for the next step.
#include "common/convert.cuh"

namespace {

constexpr unsigned FULL = 0xffffffffu;
// No <math.h> constants under NVRTC without the host headers.
__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
__device__ __forceinline__ float qnan() { return __int_as_float(0x7fc00000); }

__device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(FULL, x, o));
    return x;
}

__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(FULL, x, o);
    return x;
}

__device__ __forceinline__ unsigned long long grid_index() {
    return (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ unsigned long long grid_stride() {
    return (unsigned long long)gridDim.x * blockDim.x;
}

template <typename T>
__device__ __forceinline__ void softmax_xent(int rows, int cols, const float* __restrict__ logits,
                                             const unsigned* __restrict__ labels,
                                             const float* __restrict__ state, T* __restrict__ grad,
                                             float* __restrict__ row_loss) {
    const int warps = blockDim.x / 32;
    const int row = blockIdx.x * warps + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;  // whole warps leave together
    const float* x = logits + (long long)row * cols;
    T* g = grad + (long long)row * cols;
    const unsigned label = labels[row];
    const float scale = state ? state[0] : 1.0f;
    float m = neg_inf();
    for (int j = lane; j < cols; j += 32) m = fmaxf(m, x[j]);
    m = warp_max(m);
    float s = 0.0f;
    for (int j = lane; j < cols; j += 32) s += __expf(x[j] - m);
    s = warp_sum(s);
    const float inv_s = 1.0f / s;
    const float coef = scale / (float)rows;
    const bool valid = label < (unsigned)cols;
    for (int j = lane; j < cols; j += 32) {
        const float p = __expf(x[j] - m) * inv_s;
        const float d = valid ? p - ((unsigned)j == label ? 1.0f : 0.0f) : qnan();
        g[j] = hk::from_f32<T>(d * coef);
    }
    if (lane == 0) row_loss[row] = valid ? logf(s) + m - x[label] : qnan();
}

template <typename T>
__device__ __forceinline__ void relu_backward(unsigned long long n, const T* __restrict__ y,
                                              T* __restrict__ dy) {
    for (unsigned long long i = grid_index(); i < n; i += grid_stride()) {
        if (!(hk::to_f32(y[i]) > 0.0f)) dy[i] = hk::from_f32<T>(0.0f);
    }
}

template <typename T>
__device__ __forceinline__ void bias_grad(int rows, int cols, const T* __restrict__ dy,
                                          float* __restrict__ db) {
    __shared__ float part[8][33];
    const int col = blockIdx.x * 32 + threadIdx.x;
    float acc = 0.0f;
    if (col < cols) {
        for (int r = threadIdx.y; r < rows; r += 8) acc += hk::to_f32(dy[(long long)r * cols + col]);
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < cols) {
        float s = 0.0f;
        for (int k = 0; k < 8; ++k) s += part[k][threadIdx.x];
        db[col] = s;
    }
}

template <typename T>
__device__ __forceinline__ void cast_f32(unsigned long long n, const float* __restrict__ src,
                                         T* __restrict__ dst) {
    for (unsigned long long i = grid_index(); i < n; i += grid_stride()) {
        dst[i] = hk::from_f32<T>(src[i]);
    }
}

template <typename T>
__device__ __forceinline__ void sgd_step(unsigned long long n, float* __restrict__ w,
                                         float* __restrict__ v, const float* __restrict__ g,
                                         T* __restrict__ w_lp, float lr, float momentum,
                                         float weight_decay, const float* __restrict__ state) {
    if (state[2] != 0.0f) return;  // a gradient overflowed: skip the step
    const float inv_scale = 1.0f / state[0];
    for (unsigned long long i = grid_index(); i < n; i += grid_stride()) {
        const float wi = w[i];
        const float d = g[i] * inv_scale + weight_decay * wi;
        const float vi = momentum * v[i] + d;
        const float wn = wi - lr * vi;
        v[i] = vi;
        w[i] = wn;
        if (w_lp) w_lp[i] = hk::from_f32<T>(wn);
    }
}

}  // namespace

#define HK_TRAIN_TYPED(SUFFIX, T)                                                               \
    extern "C" __global__ void softmax_xent_##SUFFIX(int rows, int cols, const float* logits,   \
                                                     const unsigned* labels, const float* state, \
                                                     T* grad, float* row_loss) {                \
        softmax_xent(rows, cols, logits, labels, state, grad, row_loss);                        \
    }                                                                                           \
    extern "C" __global__ void relu_backward_##SUFFIX(unsigned long long n, const T* y, T* dy) { \
        relu_backward(n, y, dy);                                                                \
    }                                                                                           \
    extern "C" __global__ void bias_grad_##SUFFIX(int rows, int cols, const T* dy, float* db) {  \
        bias_grad(rows, cols, dy, db);                                                          \
    }                                                                                           \
    extern "C" __global__ void cast_f32_##SUFFIX(unsigned long long n, const float* src,        \
                                                 T* dst) {                                      \
        cast_f32(n, src, dst);                                                                  \
    }                                                                                           \
    extern "C" __global__ void sgd_step_##SUFFIX(unsigned long long n, float* w, float* v,       \
                                                 const float* g, T* w_lp, float lr,             \
                                                 float momentum, float weight_decay,            \
                                                 const float* state) {                          \
        sgd_step(n, w, v, g, w_lp, lr, momentum, weight_decay, state);                          \
    }

HK_TRAIN_TYPED(f32, float)
HK_TRAIN_TYPED(f16, __half)
HK_TRAIN_TYPED(bf16, __nv_bfloat16)

extern "C" __global__ void nonfinite_check_f32(unsigned long long n, const float* g,
                                               float* state) {
    bool bad = false;
    for (unsigned long long i = grid_index(); i < n; i += grid_stride()) {
        bad |= !isfinite(g[i]);
    }
    // Every writer stores the same value, so the race is benign.
    if (bad) state[2] = 1.0f;
}

extern "C" __global__ void loss_scale_update(float* state, unsigned growth_interval) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    if (state[2] != 0.0f) {
        state[0] = fmaxf(state[0] * 0.5f, 1.0f / 65536.0f);
        state[1] = 0.0f;
        state[3] += 1.0f;
    } else {
        state[1] += 1.0f;
        if (growth_interval > 0 && state[1] >= (float)growth_interval) {
            state[0] = fminf(state[0] * 2.0f, 65536.0f * 256.0f);
            state[1] = 0.0f;
        }
    }
    state[2] = 0.0f;
}
