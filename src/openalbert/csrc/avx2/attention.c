/*
 * Multi-head self-attention over packed variable-length sequences, for CPU inference on AVX2 + FMA CPUs
 * without AVX-512: ../attention.c's interface and plan in 8-lane vectors (see there for the layout, the
 * "relative_key" scores and why). Elements are fp32 or bf16 (widened to fp32; every product and sum is
 * fp32 and the result is rounded to nearest even once).
 *
 * With 16 vector registers, the blocks are the GEMM kernel's (fp32.c): six queries against 16 keys for the
 * scores and six queries by 16 columns for the context, 12 accumulators each. Keys are copied into panels
 * of 16 (k-major, as fp32.c packs weights) and the distance table transposed, element by element: a few
 * percent of a task's arithmetic.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "avx2.h"
#include "attention_tasks.h"


#define QR 6 /* queries per block: 6 x 16 scores or context columns in 12 of the 16 vector registers */

/* r[k][i] <- r[i][k]: an 8 x 8 block of floats transposed in registers. */
static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
        r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
    }
}

/* s (QR, Lp) = q (QR, D) @ k^T, 16 keys at a time: kp holds the keys in panels of 16, (Lp / 16, D, 16). */
static void scores(const float *q, const float *kp, float *s, int64_t D, int64_t Lp) {
    for (int64_t j = 0; j < Lp; j += 16) {
        __m256 a[QR][2];
        fma6x16(D, q, D, 1, kp + j * D, 16, a);
        for (int b = 0; b < QR; b++) {
            _mm256_storeu_ps(s + b * Lp + j, a[b][0]);
            _mm256_storeu_ps(s + b * Lp + j + 8, a[b][1]);
        }
    }
}

/* s (QR, Lp) += the relative-position scores of queries i0 + b against keys j: unscaled q . the reversed,
 * transposed distance table rt (D, Wr) read at column QR + base - b + j (base = L - 1 - i0; its first QR
 * columns are zeros, so the rows past the last query read inside it). */
static void rel_scores(const float *q, const float *rt, float *s, int64_t D, int64_t Lp, int64_t Wr,
                       int64_t base) {
    for (int64_t j = 0; j < Lp; j += 16) {
        __m256 a[QR][2];
        for (int b = 0; b < QR; b++) a[b][0] = a[b][1] = _mm256_setzero_ps();
        for (int64_t d = 0; d < D; d++) {
            const float *row = rt + d * Wr + QR + base + j;
            for (int b = 0; b < QR; b++) {
                __m256 x = _mm256_broadcast_ss(q + b * D + d);
                a[b][0] = _mm256_fmadd_ps(x, _mm256_loadu_ps(row - b), a[b][0]);
                a[b][1] = _mm256_fmadd_ps(x, _mm256_loadu_ps(row - b + 8), a[b][1]);
            }
        }
        for (int b = 0; b < QR; b++)
            for (int h = 0; h < 2; h++) {
                float *at = s + b * Lp + j + 8 * h;
                _mm256_storeu_ps(at, _mm256_add_ps(_mm256_loadu_ps(at), a[b][h]));
            }
    }
}

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

static inline float hsum8(__m256 v) {
    __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
}

/* Row-wise softmax of s[:rows, :L] in place, unnormalised: returns 1 / row sum in inv[b]. Columns L..Lp-1
 * (keys that are not there) are set to -inf first, so they add e^-87-ish nothing and are never read. */
static void softmax_rows(float *s, int64_t L, int64_t Lp, int rows, float *inv) {
    for (int b = 0; b < rows; b++) {
        float *row = s + b * Lp;
        for (int64_t j = L; j < Lp; j++) row[j] = -INFINITY;
        __m256 m = _mm256_set1_ps(-INFINITY);
        for (int64_t j = 0; j < Lp; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(row + j));
        __m256 mx = _mm256_set1_ps(hmax8(m)), sum = _mm256_setzero_ps();
        for (int64_t j = 0; j < Lp; j += 8) {
            __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), mx));
            sum = _mm256_add_ps(sum, e);
            _mm256_storeu_ps(row + j, e);
        }
        float tail = 0.0f; /* what the missing keys' e^-87 added */
        for (int64_t j = L; j < Lp; j++) tail += row[j];
        inv[b] = 1.0f / (hsum8(sum) - tail);
    }
}

/* out rows (QR queries, 16 columns from d0) = p (QR, L) @ v (L, D)[:, d0:d0+16] * inv; rows past `rows`
 * are not stored. */
static void context(const float *p, const float *v, const float *inv, void *out, int64_t at, int64_t L,
                    int64_t Lp, int64_t D, int64_t C, int rows, int bf16) {
    __m256 sums[QR][2];
    fma6x16(L, p, Lp, 1, v, D, sums);
    for (int b = 0; b < rows; b++) {
        __m256 w = _mm256_set1_ps(inv[b]);
        store8(out, at + b * C, _mm256_mul_ps(sums[b][0], w), bf16);
        store8(out, at + b * C + 8, _mm256_mul_ps(sums[b][1], w), bf16);
    }
}

static void run_task(const Job *job, int64_t seq, int64_t head, float *buf) {
    const int64_t D = job->head_dim, C = job->heads * D, L = job->lengths[seq], Lp = round16(L);
    const int64_t first = job->starts[seq], stride = 3 * C, Wr = QR + round16(L + Lp);
    const int bf16 = job->bf16;
    float *kp = buf;                               /* (Lp / 16, D, 16): keys in panels of 16 */
    float *v = kp + D * round16(job->max_len);     /* (L, D) */
    float *q = v + D * job->max_len;               /* (QR, D), scaled */
    float *s = q + QR * D;                         /* (QR, Lp) */
    float *qu = s + QR * round16(job->max_len);    /* (QR, D), unscaled, for relative positions */
    float *rt = qu + QR * D;                       /* (D, Wr): QR zeros, then the distance table reversed */
    float inv[QR];

    /* rt[d][QR + m] = table[P - 1 + (L - 1 - m)][d]: distance i - j at m = L - 1 - i + j */
    if (job->rel != NULL)
        for (int64_t m = -QR; m < Wr - QR; m++)
            for (int64_t d = 0; d < D; d++)
                rt[d * Wr + QR + m] =
                    m >= 0 && m <= 2 * L - 2 ? job->rel[(job->rel_center + L - 1 - m) * D + d] : 0.0f;
    for (int64_t j0 = 0; j0 < Lp; j0 += 8) /* key j at kp[(j / 16) D 16 + d 16 + j % 16], zeros past L */
        for (int64_t d = 0; d < D; d += 8) {
            __m256 r[8];
            for (int t = 0; t < 8; t++)
                r[t] = j0 + t < L ? load8(job->qkv, (first + j0 + t) * stride + C + head * D + d, bf16)
                                  : _mm256_setzero_ps();
            transpose8(r);
            for (int t = 0; t < 8; t++)
                _mm256_storeu_ps(kp + (j0 & ~(int64_t)15) * D + (d + t) * 16 + (j0 & 15), r[t]);
        }
    for (int64_t j = 0; j < L; j++)
        for (int64_t d = 0; d < D; d += 8)
            _mm256_storeu_ps(v + j * D + d,
                             load8(job->qkv, (first + j) * stride + 2 * C + head * D + d, bf16));

    const __m256 scale = _mm256_set1_ps(job->scale);
    for (int64_t i0 = 0; i0 < L; i0 += QR) {
        int rows = L - i0 < QR ? (int)(L - i0) : QR;
        for (int b = 0; b < QR; b++)
            for (int64_t d = 0; d < D; d += 8) {
                __m256 x = b < rows ? load8(job->qkv, (first + i0 + b) * stride + head * D + d, bf16)
                                    : _mm256_setzero_ps();
                _mm256_storeu_ps(q + b * D + d, _mm256_mul_ps(x, scale));
                _mm256_storeu_ps(qu + b * D + d, x);
            }
        scores(q, kp, s, D, Lp);
        if (job->rel != NULL) rel_scores(qu, rt, s, D, Lp, Wr, L - 1 - i0);
        softmax_rows(s, L, Lp, rows, inv);
        for (int64_t d0 = 0; d0 < D; d0 += 16)
            context(s, v + d0, inv, job->out, (first + i0) * C + head * D + d0, L, Lp, D, C, rows, bf16);
    }
}

/* As ../attention.c's: 0 on success, 1 when a thread could not get its buffers (out is then incomplete). */
int albert_packed_attention(const void *qkv, void *out, int bf16, int64_t n_seq, const int64_t *starts,
                            const int64_t *lengths, const int64_t *order, int64_t heads, int64_t head_dim,
                            int64_t max_len, float scale, const float *rel, int64_t rel_center,
                            int threads) {
    Job job = {qkv, out, bf16, starts, lengths, order, n_seq, heads, head_dim, max_len, scale, rel,
               rel_center, 0, 0};
    const int64_t Lp = round16(max_len), D = head_dim;
    /* kp, v, q, s, qu, rt (see run_task) */
    const size_t floats =
        (size_t)(D * Lp + D * max_len + QR * D + QR * Lp + QR * D + D * (QR + round16(max_len + Lp)));
    return run_tasks(&job, run_task, floats, threads);
}
