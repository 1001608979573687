/* What the native sources share: the thread pool (few_rows.c), the few-row product, horizontal sums. */
#ifndef SPEECHSEQ_NATIVE_H
#define SPEECHSEQ_NATIVE_H

#include <immintrin.h>

/* The sum of a vector's 8 lanes. */
static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The sums of 4 vectors' lanes at once, in order. */
static inline __m128 hsum4(const __m256* a) {
    __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

typedef void (*part_fn)(const void* arg, int part, int parts);

void speechseq_parallel(part_fn fn, const void* arg, int threads);
void speechseq_few_rows_linear(const float* x, long M, long K, const float* w, long N, int transposed,
                               const float* b, float* y, int threads);

#endif
