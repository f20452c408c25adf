/*
 * The tanh approximation of GELU (ALBERT v2's "gelu_new") and its derivative, for fp32 or bf16 tensors
 * on CPUs with AVX-512F:
 *
 *     gelu(x) = x / 2 (1 + tanh(u)) = x sigmoid(2u),    u = sqrt(2 / pi) (x + 0.044715 x^3)
 *     gelu'(x) = s + 2 x s (1 - s) du/dx,                s = sigmoid(2u)
 *
 * Why: PyTorch's CPU kernel for this activation takes about 3 ms per direction on one albert-base
 * feed-forward block (1024 x 3072), 4-5% of a training step; here both directions run at about the speed
 * of a copy. Every operation is fp32; bf16 results are rounded to nearest even once.
 */
#include <stdint.h>

#include "vector.h"

#define BLOCK 4096 /* elements per OpenMP chunk */

/* s = sigmoid(2u) for 16 inputs; with `d`, also gelu'(x) there. */
static inline __m512 sigmoid2u(__m512 x, __m512 *d) {
    const __m512 k0 = _mm512_set1_ps(0.7978845608028654f); /* sqrt(2 / pi) */
    const __m512 k1 = _mm512_set1_ps(0.7978845608028654f * 0.044715f);
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 u = _mm512_mul_ps(x, _mm512_fmadd_ps(k1, x2, k0));
    /* e^(-2u), capped where sigmoid(2u) is already below 1e-34 (x < -9.6) */
    __m512 e = exp16(_mm512_min_ps(_mm512_mul_ps(u, _mm512_set1_ps(-2.0f)), _mm512_set1_ps(80.0f)));
    __m512 s = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
    if (d) { /* s + 2 x s (1 - s) du/dx, with 1 - s = e s (no cancellation where s is near 1) */
        __m512 du = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(3.0f), k1), x2, k0);
        __m512 t = _mm512_mul_ps(_mm512_mul_ps(x, s), _mm512_mul_ps(e, s));
        *d = _mm512_fmadd_ps(_mm512_add_ps(t, t), du, s);
    }
    return s;
}

static inline __m512 forward16(__m512 x) { return _mm512_mul_ps(x, sigmoid2u(x, 0)); }

static inline __m512 backward16(__m512 dy, __m512 x) {
    __m512 d;
    sigmoid2u(x, &d);
    return _mm512_mul_ps(dy, d);
}

static int threads_for(int64_t n, int threads) {
    int64_t useful = n / (4 * BLOCK); /* below about 16k elements a second thread costs more than it saves */
    return threads < 1 ? 1 : useful < threads ? (useful < 1 ? 1 : (int)useful) : threads;
}

/* y = gelu(x), n elements. */
void albert_gelu_tanh(const void *x, void *y, int64_t n, int bf16, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads_for(n, threads))
    for (int64_t b = 0; b < n; b += BLOCK) {
        int64_t end = b + BLOCK < n ? b + BLOCK : n, i = b;
        for (; i + 16 <= end; i += 16) store16(y, i, forward16(load16(x, i, bf16)), bf16);
        if (i < end) {
            __mmask16 m = tail_mask(end - i);
            store_tail(y, i, forward16(load_tail(x, i, m, bf16)), m, bf16);
        }
    }
}

/* dx = dy gelu'(x), n elements. */
void albert_gelu_tanh_backward(const void *dy, const void *x, void *dx, int64_t n, int bf16, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads_for(n, threads))
    for (int64_t b = 0; b < n; b += BLOCK) {
        int64_t end = b + BLOCK < n ? b + BLOCK : n, i = b;
        for (; i + 16 <= end; i += 16) store16(dx, i, backward16(load16(dy, i, bf16), load16(x, i, bf16)), bf16);
        if (i < end) {
            __mmask16 m = tail_mask(end - i);
            store_tail(dx, i, backward16(load_tail(dy, i, m, bf16), load_tail(x, i, m, bf16)), m, bf16);
        }
    }
}
