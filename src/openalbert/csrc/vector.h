/*
 * AVX-512F helpers shared by openalbert's CPU kernels: 16 floats loaded from and stored to fp32 or bf16
 * tensors (bf16 widened exactly, and rounded to nearest even as PyTorch rounds), the same under the mask
 * of a tail shorter than 16, and e^x.
 */
#ifndef OPENALBERT_VECTOR_H
#define OPENALBERT_VECTOR_H

#include <immintrin.h>
#include <stdint.h>

static inline __m512 load16(const void *base, int64_t i, int bf16) {
    if (bf16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)base + i));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_loadu_ps((const float *)base + i);
}

/* 16 floats rounded to bf16, to nearest even as PyTorch rounds (NaN stays NaN). */
static inline __m256i to_bf16(__m512 v) {
    __m512i x = _mm512_castps_si512(v);
    __m512i odd = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(x, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(x, _mm512_set1_epi32(0x400000)));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}

static inline void store16(void *base, int64_t i, __m512 v, int bf16) {
    if (bf16)
        _mm256_storeu_si256((__m256i *)((uint16_t *)base + i), to_bf16(v));
    else
        _mm512_storeu_ps((float *)base + i, v);
}

/* e^x for x <= 88 (attention feeds it scores minus their row maximum, <= 0): x = n ln2 + r, |r| <= ln2/2,
 * e^r by its Taylor polynomial to r^6 (relative error about 1e-7), times 2^n; below -87, about 1.6e-38. */
static inline __m512 exp16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* load16 and store16 for the lanes of m only (a row's last, shorter block); other lanes load as 0. A full
 * mask takes the plain load or store (masked stores are slow on Zen 4). */
static inline __m512 load_tail(const void *base, int64_t i, __mmask16 m, int bf16) {
    if (m == (__mmask16)0xFFFF) return load16(base, i, bf16);
    if (bf16) {
        __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)base + i);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    return _mm512_maskz_loadu_ps(m, (const float *)base + i);
}

static inline void store_tail(void *base, int64_t i, __m512 v, __mmask16 m, int bf16) {
    if (m == (__mmask16)0xFFFF)
        store16(base, i, v, bf16);
    else if (bf16)
        _mm256_mask_storeu_epi16((uint16_t *)base + i, m, to_bf16(v));
    else
        _mm512_mask_storeu_ps((float *)base + i, m, v);
}

static inline __mmask16 tail_mask(int64_t left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

#endif
