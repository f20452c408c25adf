/*
 * Multi-head self-attention over packed variable-length sequences, for CPU inference with AVX-512F.
 *
 * qkv holds the real tokens of a batch back to back, (N, 3C) row-major with C = heads * head_dim, each
 * row [q | k | v]; sequence s is rows starts[s] .. starts[s] + lengths[s] - 1. out (N, C) gets
 * softmax(q k^T * scale + rel) v per sequence and head, rel the "relative_key" scores q_i . table[i - j]
 * when a distance table is given. Elements are fp32 or bf16 (then widened to fp32: every
 * product and sum is fp32, as in PyTorch's kernels on bf16 inputs, and the result is rounded to nearest
 * even once).
 *
 * Why: ALBERT's sequences are short (tens of tokens), so PyTorch's attention runs as many tiny batched
 * products per length group, at a fraction of the GEMMs' rate, after copying the tokens into a padded
 * layout and back. Here one task is one (sequence, head): its keys are transposed into a small buffer
 * that stays in L1, four queries at a time are scored against sixteen keys per vector, the softmax runs
 * on those rows, and the context is accumulated from them. Tasks go to threads longest first.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "vector.h"
#include "attention_tasks.h"

/* r[k][i] <- r[i][k]: a 16 x 16 block of floats transposed in registers. */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2*i]   = _mm512_unpacklo_ps(r[2*i], r[2*i+1]);
        t[2*i+1] = _mm512_unpackhi_ps(r[2*i], r[2*i+1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4*i]   = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[4*i]),   _mm512_castps_pd(t[4*i+2])));
        r[4*i+1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[4*i]),   _mm512_castps_pd(t[4*i+2])));
        r[4*i+2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[4*i+1]), _mm512_castps_pd(t[4*i+3])));
        r[4*i+3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[4*i+1]), _mm512_castps_pd(t[4*i+3])));
    }
    for (int i = 0; i < 2; i++) for (int j = 0; j < 4; j++) {
        t[8*i + j]     = _mm512_shuffle_f32x4(r[8*i + j], r[8*i + 4 + j], 0x88);
        t[8*i + 4 + j] = _mm512_shuffle_f32x4(r[8*i + j], r[8*i + 4 + j], 0xDD);
    }
    for (int j = 0; j < 8; j++) {
        r[j]     = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
    }
}

/* scores (4, Lp) = q (4, D) @ kt (D, Lp), four 16-key blocks at a time. */
static void score4(const float *q, const float *kt, float *s, int64_t D, int64_t Lp) {
    int64_t j = 0;
    for (; j + 64 <= Lp; j += 64) {
        __m512 a[4][4];
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 4; c++) a[b][c] = _mm512_setzero_ps();
        for (int64_t d = 0; d < D; d++) {
            const float *row = kt + d * Lp + j;
            __m512 k0 = _mm512_loadu_ps(row), k1 = _mm512_loadu_ps(row + 16);
            __m512 k2 = _mm512_loadu_ps(row + 32), k3 = _mm512_loadu_ps(row + 48);
            for (int b = 0; b < 4; b++) {
                __m512 x = _mm512_set1_ps(q[b * D + d]);
                a[b][0] = _mm512_fmadd_ps(x, k0, a[b][0]);
                a[b][1] = _mm512_fmadd_ps(x, k1, a[b][1]);
                a[b][2] = _mm512_fmadd_ps(x, k2, a[b][2]);
                a[b][3] = _mm512_fmadd_ps(x, k3, a[b][3]);
            }
        }
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 4; c++) _mm512_storeu_ps(s + b * Lp + j + 16 * c, a[b][c]);
    }
    for (; j < Lp; j += 16) {
        __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int64_t d = 0; d < D; d++) {
            __m512 k = _mm512_loadu_ps(kt + d * Lp + j);
            for (int b = 0; b < 4; b++) a[b] = _mm512_fmadd_ps(_mm512_set1_ps(q[b * D + d]), k, a[b]);
        }
        for (int b = 0; b < 4; b++) _mm512_storeu_ps(s + b * Lp + j, a[b]);
    }
}

/* s (4, Lp) += q (4, D) @ rt (D, Wr) shifted per query: the relative-position scores (Shaw et al., 2018)
 * of queries i0 + b against keys j, read at column base - b + j of the reversed distance table
 * (base = L - 1 - i0). q is unscaled: these scores are added after the 1/sqrt(d) scaling. */
static void rel_score4(const float *q, const float *rt, float *s, int64_t D, int64_t Lp, int64_t Wr,
                       int64_t base, int rows) {
    for (int64_t j = 0; j < Lp; j += 16) {
        __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int64_t d = 0; d < D; d++) {
            const float *row = rt + d * Wr + base + j;
            for (int b = 0; b < rows; b++)
                a[b] = _mm512_fmadd_ps(_mm512_set1_ps(q[b * D + d]), _mm512_loadu_ps(row - b), a[b]);
        }
        for (int b = 0; b < rows; b++)
            _mm512_storeu_ps(s + b * Lp + j, _mm512_add_ps(_mm512_loadu_ps(s + b * Lp + j), a[b]));
    }
}

/* Row-wise softmax of s[:, :L] in place, unnormalised: returns 1 / row sum in inv[b]. */
static void softmax4(float *s, int64_t L, int64_t Lp, int rows, float *inv) {
    for (int b = 0; b < rows; b++) {
        float *row = s + b * Lp;
        __m512 m = _mm512_set1_ps(-INFINITY);
        for (int64_t j = 0; j < L; j += 16)
            m = _mm512_max_ps(m, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tail_mask(L - j), row + j));
        __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(m));
        __m512 sum = _mm512_setzero_ps();
        for (int64_t j = 0; j < L; j += 16) {
            __mmask16 k = tail_mask(L - j);
            __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_loadu_ps(row + j), mx)));
            sum = _mm512_add_ps(sum, e);
            _mm512_mask_storeu_ps(row + j, k, e);
        }
        inv[b] = 1.0f / _mm512_reduce_add_ps(sum);
    }
}

/* out rows (4 queries, nc * 16 columns) = p (4, L) @ v (L, nc * 16) * inv; the rows past `rows` have
 * zero scores left in p (their queries were zero and skipped the softmax) and are not stored. */
static inline __attribute__((always_inline)) void context4(const float *p, const float *v, const float *inv,
                                                           void *out, int64_t at, int64_t L, int64_t Lp,
                                                           int64_t D, int64_t C, int rows, const int nc,
                                                           int bf16) {
    __m512 a[4][4];
    for (int b = 0; b < 4; b++)
        for (int c = 0; c < 4; c++) a[b][c] = _mm512_setzero_ps();
    for (int64_t j = 0; j < L; j++) {
        __m512 vv[4];
        for (int c = 0; c < nc; c++) vv[c] = _mm512_loadu_ps(v + j * D + 16 * c);
        for (int b = 0; b < 4; b++) {
            __m512 w = _mm512_set1_ps(p[b * Lp + j]);
            for (int c = 0; c < nc; c++) a[b][c] = _mm512_fmadd_ps(w, vv[c], a[b][c]);
        }
    }
    for (int b = 0; b < rows; b++) {
        __m512 w = _mm512_set1_ps(inv[b]);
        for (int c = 0; c < nc; c++) store16(out, at + b * C + 16 * c, _mm512_mul_ps(a[b][c], w), bf16);
    }
}

static void run_task(const Job *job, int64_t seq, int64_t head, float *buf) {
    const int64_t D = job->head_dim, C = job->heads * D, L = job->lengths[seq], Lp = round16(L);
    const int64_t first = job->starts[seq], stride = 3 * C;
    const int bf16 = job->bf16;
    float *kt = buf;                          /* (D, Lp): keys, transposed */
    float *v = kt + D * round16(job->max_len); /* (L, D) */
    float *q = v + D * job->max_len;          /* (4, D), scaled */
    float *s = q + 4 * D;                     /* (4, Lp) */
    float *qu = s + 4 * round16(job->max_len); /* (4, D), unscaled, for relative positions */
    float *rt = qu + 4 * D;                   /* (D, Wr): distance table, reversed and transposed */
    const int64_t Wr = round16(L + Lp);
    float inv[4];

    if (job->rel != NULL) /* rt[d][m] = table[P - 1 + (L - 1 - m)][d]: distance i - j at m = L - 1 - i + j */
        for (int64_t m0 = 0; m0 < Wr; m0 += 16)
            for (int64_t d = 0; d < D; d += 16) {
                __m512 r[16];
                for (int t = 0; t < 16; t++)
                    r[t] = m0 + t <= 2 * L - 2
                               ? _mm512_loadu_ps(job->rel + (job->rel_center + L - 1 - (m0 + t)) * D + d)
                               : _mm512_setzero_ps();
                transpose16(r);
                for (int t = 0; t < 16; t++) _mm512_storeu_ps(rt + (d + t) * Wr + m0, r[t]);
            }

    for (int64_t j0 = 0; j0 < Lp; j0 += 16) /* keys, 16 x 16 blocks transposed; zeros past L */
        for (int64_t d = 0; d < D; d += 16) {
            __m512 r[16];
            for (int t = 0; t < 16; t++)
                r[t] = j0 + t < L ? load16(job->qkv, (first + j0 + t) * stride + C + head * D + d, bf16)
                                  : _mm512_setzero_ps();
            transpose16(r);
            for (int t = 0; t < 16; t++) _mm512_storeu_ps(kt + (d + t) * Lp + j0, r[t]);
        }
    for (int64_t j = 0; j < L; j++)
        for (int64_t d = 0; d < D; d += 16)
            _mm512_storeu_ps(v + j * D + d, load16(job->qkv, (first + j) * stride + 2 * C + head * D + d, bf16));

    const __m512 scale = _mm512_set1_ps(job->scale);
    for (int64_t i0 = 0; i0 < L; i0 += 4) {
        int rows = L - i0 < 4 ? (int)(L - i0) : 4;
        for (int b = 0; b < 4; b++)
            for (int64_t d = 0; d < D; d += 16) {
                __m512 x = b < rows ? load16(job->qkv, (first + i0 + b) * stride + head * D + d, bf16)
                                    : _mm512_setzero_ps();
                _mm512_storeu_ps(q + b * D + d, _mm512_mul_ps(x, scale));
                _mm512_storeu_ps(qu + b * D + d, x);
            }
        score4(q, kt, s, D, Lp);
        if (job->rel != NULL) rel_score4(qu, rt, s, D, Lp, Wr, L - 1 - i0, rows);
        softmax4(s, L, Lp, rows, inv);
        for (int64_t d0 = 0; d0 < D; d0 += 64) { /* context columns d0 .. d0 + 63 of the four queries */
            if (D - d0 >= 64)
                context4(s, v + d0, inv, job->out, (first + i0) * C + head * D + d0, L, Lp, D, C, rows, 4, bf16);
            else
                context4(s, v + d0, inv, job->out, (first + i0) * C + head * D + d0, L, Lp, D, C, rows,
                         (int)((D - d0) / 16), bf16);
        }
    }
}

/* Returns 0 on success, 1 when a thread could not get its buffers (out is then incomplete). The threads
 * are PyTorch's OpenMP threads (attention_tasks.h). */
int albert_packed_attention(const void *qkv, void *out, int bf16, int64_t n_seq, const int64_t *starts,
                            const int64_t *lengths, const int64_t *order, int64_t heads, int64_t head_dim,
                            int64_t max_len, float scale, const float *rel, int64_t rel_center,
                            int threads) {
    Job job = {qkv, out, bf16, starts, lengths, order, n_seq, heads, head_dim, max_len, scale, rel, rel_center,
               0, 0};
    const int64_t Lp = round16(max_len), D = head_dim;
    /* kt, v, q, s, qu, rt (see run_task) */
    const size_t floats = (size_t)(D * Lp + D * max_len + 4 * D + 4 * Lp + 4 * D + D * 2 * Lp + 16);
    return run_tasks(&job, run_task, floats, threads);
}
