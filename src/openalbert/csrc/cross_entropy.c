/*
 * Cross-entropy over a vocabulary, fused: the loss of each row of logits (fp32 or bf16) against its target
 * and, for the backward, softmax minus the one-hot target, each in one pass over the row.
 *
 * Why: the MLM loss reads about 150 x 30,000 logits a step. Under autocast PyTorch casts them to fp32,
 * takes a log-softmax, gathers, fills a gradient of zeros, scatters, takes the log-softmax's backward and
 * casts the gradient back: about 25 ms of an albert-base training step on two cores, for work that is one
 * read of the logits and one write of their gradient. Every operation here is fp32, as there.
 */
#include <math.h>
#include <stdint.h>

#include "vector.h"

static inline float hmax(__m512 v) { return _mm512_reduce_max_ps(v); }
static inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

static inline float logit(const void *x, int64_t i, int bf16) {
    if (bf16) {
        uint32_t bits = (uint32_t)((const uint16_t *)x)[i] << 16;
        float f;
        __builtin_memcpy(&f, &bits, 4);
        return f;
    }
    return ((const float *)x)[i];
}

/* log sum exp of one row of V logits: the maximum first, then the sum of e^(x - max). */
static float row_lse(const void *x, int64_t V, int bf16) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < V; j += 16) {
        __mmask16 k = tail_mask(V - j);
        m = _mm512_mask_max_ps(m, k, m, load_tail(x, j, k, bf16));
    }
    float mx = hmax(m);
    __m512 vmx = _mm512_set1_ps(mx), s = _mm512_setzero_ps();
    for (int64_t j = 0; j < V; j += 16) {
        __mmask16 k = tail_mask(V - j);
        s = _mm512_mask_add_ps(s, k, s, exp16(_mm512_sub_ps(load_tail(x, j, k, bf16), vmx)));
    }
    return mx + logf(hsum(s));
}

/* lse[r] = log sum_j e^x[r, j]; loss[r] = lse[r] - x[r, target[r]]. */
void albert_cross_entropy(const void *logits, const int64_t *targets, float *loss, float *lse, int64_t rows,
                          int64_t V, int bf16, int threads) {
    size_t esize = bf16 ? 2 : 4;
#pragma omp parallel for schedule(static) num_threads(threads < 1 ? 1 : threads)
    for (int64_t r = 0; r < rows; r++) {
        const char *x = (const char *)logits + (size_t)r * V * esize;
        lse[r] = row_lse(x, V, bf16);
        loss[r] = lse[r] - logit(x, targets[r], bf16);
    }
}

/* dx[r, j] = g[r] (e^(x[r, j] - lse[r]) - [j == target[r]]). */
void albert_cross_entropy_backward(const void *logits, const int64_t *targets, const float *lse, const float *g,
                                   void *dx, int64_t rows, int64_t V, int bf16, int threads) {
    size_t esize = bf16 ? 2 : 4;
#pragma omp parallel for schedule(static) num_threads(threads < 1 ? 1 : threads)
    for (int64_t r = 0; r < rows; r++) {
        const char *x = (const char *)logits + (size_t)r * V * esize;
        char *d = (char *)dx + (size_t)r * V * esize;
        __m512 vl = _mm512_set1_ps(lse[r]), vg = _mm512_set1_ps(g[r]);
        int64_t t = targets[r];
        for (int64_t j = 0; j < V; j += 16) {
            __mmask16 k = tail_mask(V - j);
            __m512 p = exp16(_mm512_sub_ps(load_tail(x, j, k, bf16), vl));
            if (t >= j && t < j + 16) /* the target's lane */
                p = _mm512_mask_sub_ps(p, (__mmask16)(1u << (t - j)), p, _mm512_set1_ps(1.0f));
            store_tail(d, j, _mm512_mul_ps(vg, p), k, bf16);
        }
    }
}
