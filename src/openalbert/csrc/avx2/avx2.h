/*
 * AVX2 + FMA helpers shared by openalbert's kernels for CPUs without AVX-512 (../vector.h is their AVX-512
 * counterpart): 8 floats loaded from and stored to fp32, bf16 or fp16 tensors (half precision widened
 * exactly, and rounded to nearest even as PyTorch rounds), and e^x.
 */
#ifndef OPENALBERT_AVX2_H
#define OPENALBERT_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* bf16 (the high half of an fp32) to fp32 and back, 8 at a time; back rounds to nearest even, as PyTorch
 * does, and keeps NaN a NaN. */
static inline __m256 load_bf16x8(const uint16_t *p) {
    __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

static inline void store_bf16x8(uint16_t *p, __m256 v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc0), nan);
    _mm_storeu_si128((__m128i *)p,
                     _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
}

static inline float bf16_to_float(uint16_t v) {
    uint32_t bits = (uint32_t)v << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* The element types of the tensors these kernels read and write. */
enum { F32 = 0, BF16 = 1, F16 = 2 };

static inline float load1(const void *base, int64_t at, int kind) {
    if (kind == F32) return ((const float *)base)[at];
    uint16_t v = ((const uint16_t *)base)[at];
    return kind == BF16 ? bf16_to_float(v) : _cvtsh_ss(v);
}

static inline __m256 load8(const void *base, int64_t at, int kind) {
    if (kind == BF16) return load_bf16x8((const uint16_t *)base + at);
    if (kind == F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + at)));
    return _mm256_loadu_ps((const float *)base + at);
}

static inline void store8(void *base, int64_t at, __m256 v, int kind) {
    if (kind == BF16)
        store_bf16x8((uint16_t *)base + at, v);
    else if (kind == F16)
        _mm_storeu_si128((__m128i *)((uint16_t *)base + at), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    else
        _mm256_storeu_ps((float *)base + at, v);
}

/* The block both AVX2 kernels are built on: sums[i] (16 floats in two vectors) = sum over t < n of
 * a[i a_row + t a_step] b[t b_step + 0..15], for the 6 rows i. 12 accumulators and 3 more registers of
 * the 16; they are named, as GCC keeps an array of accumulators on the stack and stores it every step. */
static inline __attribute__((always_inline)) void fma6x16(int64_t n, const float *a, int64_t a_row,
                                                          int64_t a_step, const float *b, int64_t b_step,
                                                          __m256 sums[6][2]) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
           c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t t = 0; t < n; t++, a += a_step, b += b_step) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), ai;
#define ROW(i, lo, hi) \
    ai = _mm256_broadcast_ss(a + (i) * a_row), lo = _mm256_fmadd_ps(ai, b0, lo), \
    hi = _mm256_fmadd_ps(ai, b1, hi)
        ROW(0, c00, c01);
        ROW(1, c10, c11);
        ROW(2, c20, c21);
        ROW(3, c30, c31);
        ROW(4, c40, c41);
        ROW(5, c50, c51);
#undef ROW
    }
    sums[0][0] = c00, sums[0][1] = c01, sums[1][0] = c10, sums[1][1] = c11, sums[2][0] = c20;
    sums[2][1] = c21, sums[3][0] = c30, sums[3][1] = c31, sums[4][0] = c40, sums[4][1] = c41;
    sums[5][0] = c50, sums[5][1] = c51;
}

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

#endif
