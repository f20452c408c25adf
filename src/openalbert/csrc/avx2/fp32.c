/*
 * fp32 inference kernels for AVX2 + FMA CPUs without AVX-512 (Zen 2/3, Intel client CPUs): linear layers,
 * and the tanh GELU where no linear layer takes it in (after int8 layers).
 *
 * Linear layers:
 *
 *     y = act(x w^T + b) + residual,   x (M, K), w (N, K) as nn.Linear stores it, N a multiple of 16
 *
 * Why: with two threads PyTorch's GEMM (MKL) reaches 80-120 GFLOP/s on ALBERT's shapes at 128 rows on a
 * Zen 3 CPU, where one core alone reaches about 70; this kernel hands the threads tiles of 64 output
 * columns, so each reads only its tiles' weights, and reaches 115-155. The bias, GELU and residual add
 * happen while the result is in registers, instead of three more passes over it (PyTorch's tanh GELU
 * alone takes 6-10 ms per 1024 x 3072 block on that CPU).
 *
 * The weights are packed once (cpu_kernels.pack_linear) into panels of 16 output columns, k-major:
 * packed[(j K + k) 16 + r] = w[j 16 + r][k]. Each call copies x into panels of 6 rows, k-major, then runs
 * a 6 x 16 block of the output at a time (12 of the 16 vector registers accumulate) over blocks of KC
 * inputs, so one weight panel block (KC x 16) stays in L1 while it meets up to MC rows of x held in L2.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define MR 6    /* rows of x per block */
#define NR 16   /* output columns per weight panel: two vectors */
#define KC 384  /* inputs per block */
#define MC 168  /* rows of x per L2 block at most (MR x 28: 252 KB of x) */
#define CHUNK 4 /* weight panels per tile: 64 output columns */

enum { ACT_NONE = 0, ACT_GELU_TANH = 1, ACT_RELU = 2 };

/* vector.h's exp16 in 8 lanes (that header is AVX-512): e^x for x <= 88, x = n ln2 + r, |r| <= ln2/2, e^r
 * by its Taylor polynomial to r^6 (relative error about 1e-7), times 2^n built in the exponent bits; below
 * -87, about 1.6e-38. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(scale));
}

/* x / 2 (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2 / pi) (x + 0.044715 x^3): ALBERT v2's "gelu_new". */
static inline __m256 gelu_tanh8(__m256 x) {
    const __m256 k0 = _mm256_set1_ps(0.7978845608028654f); /* sqrt(2 / pi) */
    const __m256 k1 = _mm256_set1_ps(0.7978845608028654f * 0.044715f);
    __m256 u = _mm256_mul_ps(x, _mm256_fmadd_ps(k1, _mm256_mul_ps(x, x), k0));
    /* e^(-2u), capped where sigmoid(2u) is already below 1e-34 (x < -9.6) */
    __m256 e = exp8(_mm256_min_ps(_mm256_mul_ps(u, _mm256_set1_ps(-2.0f)), _mm256_set1_ps(80.0f)));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

static inline __m256 finish8(__m256 v, const float *bias, const float *residual, int act) {
    if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias));
    if (act == ACT_GELU_TANH) v = gelu_tanh8(v);
    else if (act == ACT_RELU) v = _mm256_max_ps(v, _mm256_setzero_ps());
    if (residual) v = _mm256_add_ps(v, _mm256_loadu_ps(residual));
    return v;
}

/* y[0:rows, 0:16] (+)= a b over kc inputs: a is a 6-row panel (k-major), b a 16-column panel (k-major).
 * `first` stores, else adds to what is there; `last` adds the bias, activation and residual. */
static void block6x16(int64_t kc, const float *a, const float *b, float *y, int64_t ldy, int rows, int first,
                      int last, const float *bias, const float *residual, int act) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
           c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00; /* 12 accumulators, in registers */
    for (int64_t k = 0; k < kc; k++, a += MR, b += NR) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), ai;
#define ROW(i, lo, hi) \
    ai = _mm256_broadcast_ss(a + i), lo = _mm256_fmadd_ps(ai, b0, lo), hi = _mm256_fmadd_ps(ai, b1, hi)
        ROW(0, c00, c01);
        ROW(1, c10, c11);
        ROW(2, c20, c21);
        ROW(3, c30, c31);
        ROW(4, c40, c41);
        ROW(5, c50, c51);
#undef ROW
    }
    __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < rows; i++) {
        float *yi = y + i * ldy;
        for (int h = 0; h < 2; h++) {
            __m256 v = acc[i][h];
            if (!first) v = _mm256_add_ps(v, _mm256_loadu_ps(yi + 8 * h));
            if (last)
                v = finish8(v, bias ? bias + 8 * h : 0, residual ? residual + i * ldy + 8 * h : 0, act);
            _mm256_storeu_ps(yi + 8 * h, v);
        }
    }
}

/* y (M, N) = act(x (M, K) w^T + bias) + residual; bias and residual may be NULL. Returns 0; -1 where the
 * copy of x could not be allocated, -2 for K = 0 (y is then untouched). */
int albert_linear(const float *x, const float *packed, const float *bias, const float *residual, float *y,
                  int64_t m, int64_t n, int64_t k, int act, int threads) {
    if (m <= 0 || n <= 0 || k <= 0) return m > 0 && n > 0 ? -2 : 0; /* the caller takes k = 0 (no GEMM) */
    int64_t panels_m = (m + MR - 1) / MR, panels_n = n / NR;
    float *xp = malloc((size_t)(panels_m * MR * k) * sizeof(float));
    if (!xp) return -1;
#pragma omp parallel num_threads(threads < 1 ? 1 : threads)
    {
#pragma omp for schedule(static)
        for (int64_t p = 0; p < panels_m; p++) { /* x in 6-row panels, k-major; missing rows are 0 */
            float *dst = xp + p * MR * k;
            int rows = m - p * MR < MR ? (int)(m - p * MR) : MR;
            for (int64_t i = 0; i < k; i++)
                for (int r = 0; r < MR; r++) dst[i * MR + r] = r < rows ? x[(p * MR + r) * k + i] : 0.0f;
        }
        /* Tiles of a row block x 4 weight panels (64 columns), handed out as threads come free (cores of
         * unequal speed, as on hybrid CPUs, finish together). Row blocks hold at most MC rows, are of
         * equal size (each streams its tiles' weights once) and are small enough for 4 tiles a thread. */
        int team = omp_get_num_threads();
        int64_t chunks = (panels_n + CHUNK - 1) / CHUNK;
        int64_t per = panels_m * chunks / (4 * team);
        per = per < 1 ? 1 : per > MC / MR ? MC / MR : per;
        int64_t blocks = (panels_m + per - 1) / per;
        per = (panels_m + blocks - 1) / blocks;
#pragma omp for schedule(dynamic)
        for (int64_t tile = 0; tile < blocks * chunks; tile++) {
            int64_t p0 = tile / chunks * per, p1 = p0 + per < panels_m ? p0 + per : panels_m;
            int64_t j0 = tile % chunks * CHUNK, j1 = j0 + CHUNK < panels_n ? j0 + CHUNK : panels_n;
            for (int64_t kb = 0; kb < k; kb += KC) {
                int64_t kc = k - kb < KC ? k - kb : KC;
                int first = kb == 0, last = kb + kc == k;
                for (int64_t j = j0; j < j1; j++) {
                    const float *b = packed + (j * k + kb) * NR;
                    for (int64_t p = p0; p < p1; p++) {
                        int rows = m - p * MR < MR ? (int)(m - p * MR) : MR;
                        int64_t at = p * MR * n + j * NR;
                        block6x16(kc, xp + p * MR * k + kb * MR, b, y + at, n, rows, first, last,
                                  bias ? bias + j * NR : 0, residual ? residual + at : 0, act);
                    }
                }
            }
        }
    }
    free(xp);
    return 0;
}

/* y = gelu(x) (the tanh form), n fp32 elements. PyTorch's takes 6-10 ms per 1024 x 3072 block on a Zen 3
 * CPU (its tanh is slow there); this one about 3 ms. */
void albert_gelu_tanh_fp32(const float *x, float *y, int64_t n, int threads) {
    const int64_t block = 4096;
    int useful = (int)(n / (4 * block)); /* below about 16k elements a thread costs more than it saves */
    int team = threads < useful ? threads : useful;
#pragma omp parallel for schedule(static) num_threads(team < 1 ? 1 : team)
    for (int64_t b = 0; b < n; b += block) {
        int64_t end = b + block < n ? b + block : n, i = b;
        for (; i + 8 <= end; i += 8) _mm256_storeu_ps(y + i, gelu_tanh8(_mm256_loadu_ps(x + i)));
        if (i < end) { /* the last few, through a full vector */
            float tail[8] = {0};
            memcpy(tail, x + i, (size_t)(end - i) * sizeof(float));
            _mm256_storeu_ps(tail, gelu_tanh8(_mm256_loadu_ps(tail)));
            memcpy(y + i, tail, (size_t)(end - i) * sizeof(float));
        }
    }
}
