/* The float64 steps of Kaldi fbank on either side of the FFT, for audio/fbank.py (which runs numpy's
   pocketfft between them, so that the spectrum stays transformers' bit for bit).

   speechseq_fbank_frames writes the FFT input of a block of frames with numpy's float64 operations in
   transformers' order: the pairwise sum numpy's mean takes, DC removal, x[t] - (0.97 x[t-1]), the window.
   Compiled with -ffp-contract=off (nn/native.py), so that no product and sum fuse into an FMA that rounds
   once where numpy rounds twice. speechseq_fbank_mel rounds the spectrum to complex64 as transformers
   stores it, squares its parts exactly in float64, sums each mel filter's band and takes the log (fdlibm's
   algorithm, 4 lanes at once). Only the band sums (in another order than a dense product) and the log
   (within an ulp, as numpy's own) may round differently from transformers, in float64, far below the
   float32 ulp of the result. */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#define FRAME_LENGTH 400
#define HOP_LENGTH 160
#define FFT_LENGTH 512
#define FFT_BINS (FFT_LENGTH / 2 + 1)
#define PAIRWISE_BLOCK 128
#define MEL_CHUNK 64 /* filters summed before their logs are taken */

static const double PREEMPHASIS = 0.97;
static const double MEL_FLOOR = 1.192092955078125e-07; /* float32 eps */

/* numpy's pairwise sum of a contiguous float64 run (loops_utils.h.src: 8 accumulators up to 128 terms,
   halves at multiples of 8 above), which np.add.reduce and np.mean use along a contiguous axis. */
static double pairwise_sum(const double* a, long n) {
    if (n < 8) {
        double sum = 0.0;
        for (long i = 0; i < n; i++) sum += a[i];
        return sum;
    }
    if (n <= PAIRWISE_BLOCK) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        long i = 8;
        for (; i < n - n % 8; i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) sum += a[i];
        return sum;
    }
    long half = n / 2;
    half -= half % 8;
    return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

/* The FFT input of `count` frames of `samples` (float32 if single, else float64; scaled by 2^15 here)
   into buffer, (count, FFT_LENGTH) float64, zero-padded after FRAME_LENGTH. noise, (count, FRAME_LENGTH)
   or NULL, is added to each frame as dither * noise. */
void speechseq_fbank_frames(const void* samples, int single, long count, const double* noise, double dither,
                            const double* window, double* buffer) {
    double frame[FRAME_LENGTH];
    for (long f = 0; f < count; f++) {
        long first = f * HOP_LENGTH;
        if (single) {
            const float* s = (const float*)samples + first;
            for (int t = 0; t < FRAME_LENGTH; t++) frame[t] = (double)(s[t] * 32768.0f);
        } else {
            const double* s = (const double*)samples + first;
            for (int t = 0; t < FRAME_LENGTH; t++) frame[t] = s[t] * 32768.0;
        }
        if (noise != NULL) {
            const double* n = noise + f * FRAME_LENGTH;
            for (int t = 0; t < FRAME_LENGTH; t++) frame[t] = frame[t] + dither * n[t];
        }
        double mean = pairwise_sum(frame, FRAME_LENGTH) / FRAME_LENGTH;
        for (int t = 0; t < FRAME_LENGTH; t++) frame[t] = frame[t] - mean;
        double* out = buffer + f * FFT_LENGTH;
        out[0] = 0.0; /* transformers' x[0] (1 - 0.97) times the window's 0 */
        for (int t = 1; t < FRAME_LENGTH; t++) out[t] = (frame[t] - PREEMPHASIS * frame[t - 1]) * window[t];
        for (int t = FRAME_LENGTH; t < FFT_LENGTH; t++) out[t] = 0.0;
    }
}

/* Natural log of 4 doubles, by fdlibm's __ieee754_log (error below 1 ulp) without its branches: x = 2^k
   (1 + f) with 1 + f in [sqrt(2)/2, sqrt(2)), log(1 + f) = f - s (f - R) or f - (f^2 / 2 - s (f^2 / 2 + R))
   with s = f / (2 + f) and R a polynomial in s^2. For positive normal x, +inf and NaN (others do not occur:
   mel energies are floored at MEL_FLOOR). */
static inline __m256d log4(__m256d x) {
    const __m256i bits = _mm256_castpd_si256(x);
    __m256i high = _mm256_srli_epi64(bits, 32); /* the high word (sign 0), one per 64-bit lane */
    __m256i k = _mm256_sub_epi64(_mm256_srli_epi64(high, 20), _mm256_set1_epi64x(1023));
    high = _mm256_and_si256(high, _mm256_set1_epi64x(0x000fffff));
    const __m256i half = _mm256_and_si256(_mm256_add_epi64(high, _mm256_set1_epi64x(0x95f64)),
                                          _mm256_set1_epi64x(0x100000)); /* mantissa >= sqrt(2): halve */
    k = _mm256_add_epi64(k, _mm256_srli_epi64(half, 20));
    const __m256i exponent = _mm256_xor_si256(half, _mm256_set1_epi64x(0x3ff00000));
    const __m256i low = _mm256_and_si256(bits, _mm256_set1_epi64x(0xffffffff));
    const __m256d m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_slli_epi64(_mm256_or_si256(high, exponent), 32), low));
    /* double(k) for |k| < 2^51: add k to the bits of 1.5 * 2^52 and subtract that number */
    const __m256d magic = _mm256_set1_pd(6755399441055744.0);
    const __m256d dk = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(magic), k)), magic);

    const __m256d f = _mm256_sub_pd(m, _mm256_set1_pd(1.0));
    const __m256d s = _mm256_div_pd(f, _mm256_add_pd(_mm256_set1_pd(2.0), f));
    const __m256d z = _mm256_mul_pd(s, s), w = _mm256_mul_pd(z, z);
#define MUL_ADD(a, b, c) _mm256_add_pd(_mm256_set1_pd(a), _mm256_mul_pd(b, c))
    const __m256d t1 = _mm256_mul_pd(w, MUL_ADD(3.999999999940941908e-01, w, MUL_ADD(2.222219843214978396e-01, w, _mm256_set1_pd(1.531383769920937332e-01))));
    const __m256d t2 = _mm256_mul_pd(z, MUL_ADD(6.666666666666735130e-01, w, MUL_ADD(2.857142874366239149e-01, w, MUL_ADD(1.818357216161805012e-01, w, _mm256_set1_pd(1.479819860511658591e-01)))));
#undef MUL_ADD
    const __m256d r = _mm256_add_pd(t2, t1);
    const __m256d ln2_hi = _mm256_set1_pd(6.93147180369123816490e-01), ln2_lo = _mm256_set1_pd(1.90821492927058770002e-10);
    const __m256d hi = _mm256_mul_pd(dk, ln2_hi), lo = _mm256_mul_pd(dk, ln2_lo);
    const __m256d hfsq = _mm256_mul_pd(_mm256_mul_pd(_mm256_set1_pd(0.5), f), f);
    /* fdlibm's i > 0: the mantissa's high bits outside [0x6147a, 0x6b851] */
    const __m256i outside = _mm256_or_si256(_mm256_sub_epi64(high, _mm256_set1_epi64x(0x6147a)),
                                            _mm256_sub_epi64(_mm256_set1_epi64x(0x6b851), high));
    const __m256d wide = _mm256_castsi256_pd(_mm256_cmpgt_epi64(outside, _mm256_setzero_si256()));
    const __m256d with_hfsq = _mm256_sub_pd(hi, _mm256_sub_pd(_mm256_sub_pd(hfsq, _mm256_add_pd(_mm256_mul_pd(s, _mm256_add_pd(hfsq, r)), lo)), f));
    const __m256d without = _mm256_sub_pd(hi, _mm256_sub_pd(_mm256_sub_pd(_mm256_mul_pd(s, _mm256_sub_pd(f, r)), lo), f));
    const __m256d result = _mm256_blendv_pd(without, with_hfsq, wide);
    const __m256d finite = _mm256_cmp_pd(x, _mm256_set1_pd(INFINITY), _CMP_LT_OQ); /* false for NaN too */
    return _mm256_blendv_pd(x, result, finite);                                     /* log(inf) = inf */
}

/* Log-mel energies of `count` spectra, (count, FFT_BINS) complex128 as (re, im) pairs, into out (count
   rows, out_stride floats apart) float32. Filter j weighs bins first[j] .. first[j] + width[j] - 1 by
   weights[offset[j] ..]. Frames go 4 at a time, one per vector lane, so that each filter's short loop over
   its band runs once for 4 frames; the logs of a chunk of filters are taken after all their sums, so that
   the two do not wait on each other. */
void speechseq_fbank_mel(const double* spectrum, long count, const long* first, const long* width,
                         const long* offset, const double* weights, long mel_bins, float* out,
                         long out_stride) {
    double power[FFT_BINS * 4];            /* bin k of lane l at 4 k + l */
    double energies[MEL_CHUNK * 4];        /* filter j0 + j of lane l at 4 j + l */
    float logs[MEL_CHUNK * 4];
    const __m256d floor = _mm256_set1_pd(MEL_FLOOR);
    for (long f0 = 0; f0 < count; f0 += 4) {
        int lanes = count - f0 < 4 ? (int)(count - f0) : 4;
        for (int lane = 0; lane < 4; lane++) {
            const double* s = spectrum + 2 * FFT_BINS * (f0 + (lane < lanes ? lane : 0));
            for (int k = 0; k < FFT_BINS; k++) {
                double re = (float)s[2 * k], im = (float)s[2 * k + 1];
                power[4 * k + lane] = re * re + im * im; /* exact squares of float32 parts, one rounding */
            }
        }
        for (long j0 = 0; j0 < mel_bins; j0 += MEL_CHUNK) {
            long filters = mel_bins - j0 < MEL_CHUNK ? mel_bins - j0 : MEL_CHUNK;
            for (long j = 0; j < filters; j++) {
                const double* p = power + 4 * first[j0 + j];
                const double* w = weights + offset[j0 + j];
                long n = width[j0 + j], k = 0;
                __m256d even = _mm256_setzero_pd(), odd = _mm256_setzero_pd(); /* two chains, half the wait */
                for (; k + 2 <= n; k += 2) {
                    even = _mm256_add_pd(even, _mm256_mul_pd(_mm256_loadu_pd(p + 4 * k), _mm256_set1_pd(w[k])));
                    odd = _mm256_add_pd(odd, _mm256_mul_pd(_mm256_loadu_pd(p + 4 * k + 4), _mm256_set1_pd(w[k + 1])));
                }
                if (k < n) even = _mm256_add_pd(even, _mm256_mul_pd(_mm256_loadu_pd(p + 4 * k), _mm256_set1_pd(w[k])));
                _mm256_storeu_pd(energies + 4 * j, _mm256_add_pd(even, odd));
            }
            for (long j = 0; j < filters; j++) {
                __m256d energy = _mm256_loadu_pd(energies + 4 * j);
                /* energy < floor ? floor : energy, so that NaN stays NaN as in numpy's maximum */
                energy = _mm256_blendv_pd(energy, floor, _mm256_cmp_pd(energy, floor, _CMP_LT_OQ));
                _mm_storeu_ps(logs + 4 * j, _mm256_cvtpd_ps(log4(energy)));
            }
            for (int lane = 0; lane < lanes; lane++)
                for (long j = 0; j < filters; j++) out[(f0 + lane) * out_stride + j0 + j] = logs[4 * j + lane];
        }
    }
}
