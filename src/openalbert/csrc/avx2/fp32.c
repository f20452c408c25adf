/*
 * fp32 inference kernels for AVX2 + FMA CPUs without AVX-512 (Zen 2/3, Intel client CPUs): linear layers,
 * on fp32, bf16 or fp16 tensors (half precision widened exactly and summed in fp32: these CPUs have no bf16
 * or fp16 arithmetic, and PyTorch's emulated GEMMs run 6-7x slower than fp32 there), and the tanh GELU
 * where no linear layer takes it in (after int8 layers).
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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#include "avx2.h"

#define MR 6    /* rows of x per block */
#define NR 16   /* output columns per weight panel: two vectors */
#define KC 384  /* inputs per block */
#define MC 168  /* rows of x per L2 block at most (MR x 28: 252 KB of x) */
#define CHUNK 4 /* weight panels per tile: 64 output columns */

enum { ACT_NONE = 0, ACT_GELU_TANH = 1, ACT_RELU = 2 };

/* x / 2 (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2 / pi) (x + 0.044715 x^3): ALBERT v2's "gelu_new". */
static inline __m256 gelu_tanh8(__m256 x) {
    const __m256 k0 = _mm256_set1_ps(0.7978845608028654f); /* sqrt(2 / pi) */
    const __m256 k1 = _mm256_set1_ps(0.7978845608028654f * 0.044715f);
    __m256 u = _mm256_mul_ps(x, _mm256_fmadd_ps(k1, _mm256_mul_ps(x, x), k0));
    /* e^(-2u), capped where sigmoid(2u) is already below 1e-34 (x < -9.6) */
    __m256 e = exp8(_mm256_min_ps(_mm256_mul_ps(u, _mm256_set1_ps(-2.0f)), _mm256_set1_ps(80.0f)));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* Where finished values go: y (M, N) of element type `kind`, the residual (same layout and type, or NULL),
 * the fp32 bias (or NULL) and the activation. */
typedef struct {
    void *y;
    const void *residual;
    const float *bias;
    int64_t n;
    int act, kind;
} Sink;

/* bias, activation and residual on 8 sums of row `row`, columns col..col+7, stored to the sink's y */
static inline void finish8(__m256 v, const Sink *s, int64_t row, int64_t col) {
    int64_t at = row * s->n + col;
    if (s->bias) v = _mm256_add_ps(v, _mm256_loadu_ps(s->bias + col));
    if (s->act == ACT_GELU_TANH) v = gelu_tanh8(v);
    else if (s->act == ACT_RELU) v = _mm256_max_ps(v, _mm256_setzero_ps());
    if (s->residual) v = _mm256_add_ps(v, load8(s->residual, at, s->kind));
    store8(s->y, at, v, s->kind);
}

/* acc[0:rows, 0:16] (+)= a b over kc inputs: a is a 6-row panel (k-major), b a 16-column panel (k-major),
 * acc fp32 partial sums (ldacc apart). `first` stores, else adds to what is there; `last` sends the sums
 * to the sink instead (rows row.., columns col..), with the bias, activation and residual. */
static void block6x16(int64_t kc, const float *a, const float *b, float *acc, int64_t ldacc, int rows,
                      int first, int last, const Sink *sink, int64_t row, int64_t col) {
    __m256 sums[MR][2];
    fma6x16(kc, a, 1, MR, b, NR, sums);
    for (int i = 0; i < rows; i++) {
        float *ai = acc + i * ldacc;
        for (int h = 0; h < 2; h++) {
            __m256 v = sums[i][h];
            if (!first) v = _mm256_add_ps(v, _mm256_loadu_ps(ai + 8 * h));
            if (last) finish8(v, sink, row + i, col + 8 * h);
            else _mm256_storeu_ps(ai + 8 * h, v);
        }
    }
}

/* y (M, N) = act(x (M, K) w^T + bias) + residual; bias and residual may be NULL. x, residual and y are fp32,
 * bf16 or fp16 as `kind` says (F32, BF16, F16; the sums are fp32 either way, rounded once at the end); the
 * bias is fp32. Returns 0; -1 where the copy of x could not be allocated, -2 for K = 0 (y is then
 * untouched). */
int albert_linear(const void *x, const float *packed, const float *bias, const void *residual, void *y,
                  int64_t m, int64_t n, int64_t k, int act, int kind, int threads) {
    if (m <= 0 || n <= 0 || k <= 0) return m > 0 && n > 0 ? -2 : 0; /* the caller takes k = 0 (no GEMM) */
    threads = threads < 1 ? 1 : threads;
    int64_t panels_m = (m + MR - 1) / MR, panels_n = n / NR;
    /* half-precision output keeps its partial sums over input blocks in fp32: a tile's worth per thread */
    int64_t scratch = kind != F32 ? MC * CHUNK * NR : 0;
    float *xp = malloc((size_t)(panels_m * MR * k + threads * scratch) * sizeof(float));
    if (!xp) return -1;
    Sink sink = {y, residual, bias, n, act, kind};
#pragma omp parallel num_threads(threads)
    {
#pragma omp for schedule(static)
        for (int64_t p = 0; p < panels_m; p++) { /* x in 6-row panels, k-major; missing rows are 0 */
            float *dst = xp + p * MR * k;
            int rows = m - p * MR < MR ? (int)(m - p * MR) : MR;
            for (int r = 0; r < MR; r++) {
                int64_t at = (p * MR + r) * k;
                int64_t i = 0;
                if (r < rows) { /* 8 at a time: half precision widened one by one costs as much as the GEMM */
                    float wide[8];
                    for (; i + 8 <= k; i += 8) {
                        _mm256_storeu_ps(wide, load8(x, at + i, kind));
                        for (int t = 0; t < 8; t++) dst[(i + t) * MR + r] = wide[t];
                    }
                    for (; i < k; i++) dst[i * MR + r] = load1(x, at + i, kind);
                }
                for (; i < k; i++) dst[i * MR + r] = 0.0f;
            }
        }
        /* Tiles of a row block x 4 weight panels (64 columns), handed out as threads come free (cores of
         * unequal speed, as on hybrid CPUs, finish together). Row blocks hold at most MC rows, are of
         * equal size (each streams its tiles' weights once) and are small enough for 4 tiles a thread. */
        int team = omp_get_num_threads();
        float *tile_sums = xp + panels_m * MR * k + omp_get_thread_num() * scratch;
        int64_t ldacc = kind != F32 ? CHUNK * NR : n; /* partial sums: in y for fp32, else in tile_sums */
        int64_t chunks = (panels_n + CHUNK - 1) / CHUNK;
        int64_t per = panels_m * chunks / (4 * team);
        per = per < 1 ? 1 : per > MC / MR ? MC / MR : per;
        int64_t blocks = (panels_m + per - 1) / per;
        per = (panels_m + blocks - 1) / blocks;
#pragma omp for schedule(dynamic)
        for (int64_t tile = 0; tile < blocks * chunks; tile++) {
            int64_t p0 = tile / chunks * per, p1 = p0 + per < panels_m ? p0 + per : panels_m;
            int64_t j0 = tile % chunks * CHUNK, j1 = j0 + CHUNK < panels_n ? j0 + CHUNK : panels_n;
            float *sums = kind != F32 ? tile_sums : (float *)y + p0 * MR * n + j0 * NR; /* the tile's */
            for (int64_t kb = 0; kb < k; kb += KC) {
                int64_t kc = k - kb < KC ? k - kb : KC;
                int first = kb == 0, last = kb + kc == k;
                for (int64_t j = j0; j < j1; j++) {
                    const float *b = packed + (j * k + kb) * NR;
                    for (int64_t p = p0; p < p1; p++) {
                        int rows = m - p * MR < MR ? (int)(m - p * MR) : MR;
                        float *acc = sums + (p - p0) * MR * ldacc + (j - j0) * NR;
                        block6x16(kc, xp + p * MR * k + kb * MR, b, acc, ldacc, rows, first, last, &sink,
                                  p * MR, j * NR);
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
