/* One decoding step of a transformer decoder stack, for a few rows, in one call (AVX2 + FMA).

   What nn/transformer.DecoderLayer does for one new token per row, layer after layer: LayerNorm (before or
   after each residual add), self-attention over the cache (the new keys and values written into it),
   cross-attention over the precomputed encoder keys and values, and the feed-forward block. The products run
   on the few-row kernel (few_rows.c) and attention on the same thread pool, one (row, head) pair per task;
   everything else runs on the calling thread. A step in torch runs about 700 operators, each paying its
   dispatch and Python overhead; here the step costs about what its weights take to read.
   Driven by nn/native_decoder.py, which lays out the structs below; results agree with the torch layers to
   float32 rounding (other summation orders, and exp and erf by the polynomials torch's own kernels use). */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "native.h"

typedef struct {
    const float *w, *b; /* weight (n, k), stored (out, in) without gaps; bias (n) or NULL */
    long n, k;
} linear_t;

typedef struct {
    const float *norm_w[3], *norm_b[3]; /* LayerNorms of the self-attention, cross-attention, FFN blocks */
    linear_t q, k, v, o, cross_q, cross_o, fc1, fc2;
    const float *memory_k, *memory_v; /* (Bm, H, S, Dh), last stride 1 */
    long k_strides[3], v_strides[3];    /* of Bm, H, S, in floats */
} layer_t;

enum { RELU = 0, GELU = 1, GELU_TANH = 2, SILU = 3 };

typedef struct {
    long layers, d, heads, ffn, rows, norm_first, activation;
    double eps;
    const layer_t* layer;
    long memory_len, group;             /* S; decoder rows per memory row */
    const unsigned char* memory_keep;   /* (Bm, S): 1 where a key may be attended to; NULL: all */
    float* work;                        /* rows * (5 d + ffn) floats */
} decoder_t;

/* exp by Cephes' polynomial, as in the SIMD math libraries (about 1 ulp). */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f));
    __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* erf by Abramowitz and Stegun 7.1.26, the formula of torch's vectorised erf (GELU's). */
static inline __m256 erf8(__m256 x) {
    const __m256 sign = _mm256_and_ps(_mm256_set1_ps(-0.f), x), one = _mm256_set1_ps(1.f);
    __m256 a = _mm256_xor_ps(sign, x);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), a, one));
    __m256 r = _mm256_fmadd_ps(_mm256_set1_ps(1.061405429f), t, _mm256_set1_ps(-1.453152027f));
    r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(1.421413741f));
    r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(-0.284496736f));
    r = _mm256_fmadd_ps(r, t, _mm256_set1_ps(0.254829592f));
    __m256 e = exp8(_mm256_xor_ps(_mm256_set1_ps(-0.f), _mm256_mul_ps(x, x)));
    __m256 y = _mm256_fnmadd_ps(_mm256_mul_ps(e, t), r, one);
    return _mm256_xor_ps(sign, y);
}

static inline __m256 tanh8(__m256 x) {
    /* tanh x = sign(x) (1 - 2 / (exp(2|x|) + 1)); below |x| = 0.1 the odd series to x^9, which is exact to
       float rounding there and keeps the relative accuracy that the difference loses near 0. */
    const __m256 sign = _mm256_and_ps(_mm256_set1_ps(-0.f), x), one = _mm256_set1_ps(1.f);
    __m256 a = _mm256_xor_ps(sign, x);
    __m256 e = exp8(_mm256_min_ps(_mm256_add_ps(a, a), _mm256_set1_ps(40.f)));
    __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.f), _mm256_add_ps(e, one)));
    __m256 a2 = _mm256_mul_ps(a, a);
    __m256 s = _mm256_fmadd_ps(_mm256_set1_ps(62.f / 2835.f), a2, _mm256_set1_ps(-17.f / 315.f));
    s = _mm256_fmadd_ps(s, a2, _mm256_set1_ps(2.f / 15.f));
    s = _mm256_fmadd_ps(s, a2, _mm256_set1_ps(-1.f / 3.f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(s, a2), a, a);
    __m256 y = _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, _mm256_set1_ps(0.1f), _CMP_LT_OQ));
    return _mm256_xor_ps(sign, y);
}

static inline __m256 activate8(__m256 x, long kind) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.f);
    switch (kind) {
    case GELU: /* x / 2 (1 + erf(x / sqrt 2)) */
        return _mm256_mul_ps(_mm256_mul_ps(x, half),
                             _mm256_add_ps(one, erf8(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)))));
    case GELU_TANH: { /* x / 2 (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) */
        __m256 inner = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
                                     _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), x), _mm256_mul_ps(x, x), x));
        return _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, tanh8(inner)));
    }
    case SILU: /* x / (1 + exp(-x)) */
        return _mm256_div_ps(x, _mm256_add_ps(one, exp8(_mm256_xor_ps(_mm256_set1_ps(-0.f), x))));
    default:
        return _mm256_max_ps(x, _mm256_setzero_ps());
    }
}

static void activate(float* x, long n, long kind) {
    long i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, activate8(_mm256_loadu_ps(x + i), kind));
    if (i < n) {
        float tail[8] = {0};
        memcpy(tail, x + i, (n - i) * sizeof(float));
        _mm256_storeu_ps(tail, activate8(_mm256_loadu_ps(tail), kind));
        memcpy(x + i, tail, (n - i) * sizeof(float));
    }
}

static float dot(const float* a, const float* b, long n) {
    __m256 acc = _mm256_setzero_ps();
    long i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* out (rows, d) = LayerNorm(x); out may be x. Mean and variance in double. */
static void layer_norm(const float* x, long rows, long d, const float* w, const float* b, double eps, float* out) {
    for (long r = 0; r < rows; r++, x += d, out += d) {
        double sum = 0, squares = 0;
        for (long i = 0; i < d; i++) sum += x[i];
        double mean = sum / d;
        for (long i = 0; i < d; i++) squares += (x[i] - mean) * (x[i] - mean);
        float m = (float)mean, rstd = (float)(1.0 / sqrt(squares / d + eps));
        for (long i = 0; i < d; i++) out[i] = (x[i] - m) * rstd * w[i] + b[i];
    }
}

static void linear(const linear_t* l, const float* x, long rows, float* y, int threads) {
    /* The threading rule of nn/native.py: a weight of 2**16 elements or 2**20 multiply-adds. */
    long size = l->n * l->k;
    int t = size >= (1L << 16) || rows * size >= (1L << 20) ? threads : 1;
    speechseq_few_rows_linear(x, rows, l->k, l->w, l->n, 0, l->b, y, t);
}

/* Keys or values of one head: row j at base + at[j] (a row table's offsets) or, without one, base + j * stride. */
typedef struct {
    const float* base;
    const long* at;
    long stride;
} rows_t;

static inline const float* row_of(const rows_t* r, long j) { return r->base + (r->at ? r->at[j] : j * r->stride); }

/* scores[j] = scale * q . k_j for j < len; four keys at a time, so that the four dot products run side by side. */
static void dots(const float* q, const rows_t* k, long len, long dh, float scale, float* scores) {
    long j = 0, vec = dh & ~7L;
    for (; j + 4 <= len; j += 4) {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        const float* kj[4] = {row_of(k, j), row_of(k, j + 1), row_of(k, j + 2), row_of(k, j + 3)};
        for (long c = 0; c < vec; c += 8) {
            __m256 qv = _mm256_loadu_ps(q + c);
            for (int t = 0; t < 4; t++) acc[t] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kj[t] + c), acc[t]);
        }
        float sums[4];
        _mm_storeu_ps(sums, hsum4(acc));
        for (int t = 0; t < 4; t++) {
            for (long c = vec; c < dh; c++) sums[t] += q[c] * kj[t][c];
            scores[j + t] = sums[t] * scale;
        }
    }
    for (; j < len; j++) scores[j] = dot(q, row_of(k, j), dh) * scale;
}

/* scores (len) -> softmax weights in place (keys not kept: weight 0); returns 1 / their sum. */
static float softmax(float* scores, long len, const unsigned char* keep) {
    float top = -INFINITY;
    for (long j = 0; j < len; j++) {
        if (keep && !keep[j]) scores[j] = -INFINITY;
        if (scores[j] > top) top = scores[j];
    }
    const __m256 topv = _mm256_set1_ps(top), hidden = _mm256_set1_ps(-INFINITY);
    __m256 sumv = _mm256_setzero_ps();
    long j = 0;
    for (; j + 8 <= len; j += 8) {
        __m256 s = _mm256_loadu_ps(scores + j);
        __m256 e = _mm256_and_ps(exp8(_mm256_sub_ps(s, topv)), _mm256_cmp_ps(s, hidden, _CMP_NEQ_OQ));
        _mm256_storeu_ps(scores + j, e);
        sumv = _mm256_add_ps(sumv, e);
    }
    float total = hsum(sumv);
    for (; j < len; j++) {
        scores[j] = scores[j] == -INFINITY ? 0.f : expf(scores[j] - top);
        total += scores[j];
    }
    return 1.0f / total;
}

/* out (dh) = inverse * sum_j p_j v_j, 64 columns at a time held in registers. */
static void weighted_sum(const float* p, const rows_t* v, long len, long dh, float inverse, float* out) {
    long c0 = 0;
    for (; c0 + 8 <= dh; c0 += 64) {
        int nv = (int)((dh - c0) / 8 < 8 ? (dh - c0) / 8 : 8);
        __m256 acc[8];
        for (int t = 0; t < nv; t++) acc[t] = _mm256_setzero_ps();
        for (long j = 0; j < len; j++) {
            if (p[j] == 0.f) continue;
            __m256 pj = _mm256_set1_ps(p[j]);
            const float* vj = row_of(v, j) + c0;
            for (int t = 0; t < nv; t++) acc[t] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * t), acc[t]);
        }
        __m256 inv = _mm256_set1_ps(inverse);
        for (int t = 0; t < nv; t++) _mm256_storeu_ps(out + c0 + 8 * t, _mm256_mul_ps(acc[t], inv));
        if (nv < 8) {
            c0 += 8 * nv;
            break;
        }
    }
    for (long c = c0; c < dh; c++) {
        float s = 0.f;
        for (long j = 0; j < len; j++) s += p[j] * row_of(v, j)[c];
        out[c] = s * inverse;
    }
}

#define SCORES_ON_STACK 8192 /* keys; 32 KB */

typedef struct {
    const decoder_t* s;
    const float* q; /* (rows, d) */
    float* out;     /* (rows, d) */
    /* self-attention: the layer's cache keys and values, (rows, H, capacity, Dh), and the row table
       (capacity, rows): origin[p * rows + r] is the buffer row holding row r's position p (NULL: r) */
    const float *cache_k, *cache_v;
    const int* origin;
    long capacity, len;
    const layer_t* cross; /* cross-attention of this layer instead, when not NULL */
} attention_job_t;

/* Units of work: (row, head) for self-attention; (memory row, head) for cross-attention, where the `group`
   rows that share a memory row (beams) attend together, so that its keys and values are read once. */
static void attention_part(const void* arg, int part, int parts) {
    const attention_job_t* job = arg;
    const decoder_t* s = job->s;
    long heads = s->heads, dh = s->d / heads, group = job->cross ? s->group : 1;
    long units = s->rows / group * heads, len = job->cross ? s->memory_len : job->len;
    float scale = 1.0f / sqrtf((float)dh);
    /* Scores (and row offsets) on the stack, short of very long memories: no allocation per call. */
    float local[SCORES_ON_STACK];
    long local_at[SCORES_ON_STACK];
    int big = len > SCORES_ON_STACK;
    float* scores = big ? malloc(len * sizeof(float)) : local;
    long* at = job->origin ? (big ? malloc(len * sizeof(long)) : local_at) : NULL;
    for (long u = units * part / parts; u < units * (part + 1) / parts; u++) {
        long m = u / heads, h = u % heads;
        rows_t k, v;
        const unsigned char* keep = NULL;
        if (job->cross) {
            const layer_t* l = job->cross;
            k = (rows_t){l->memory_k + m * l->k_strides[0] + h * l->k_strides[1], NULL, l->k_strides[2]};
            v = (rows_t){l->memory_v + m * l->v_strides[0] + h * l->v_strides[1], NULL, l->v_strides[2]};
            if (s->memory_keep) keep = s->memory_keep + m * len;
        } else {
            if (at)
                for (long j = 0; j < len; j++) at[j] = ((job->origin[j * s->rows + m] * heads + h) * job->capacity + j) * dh;
            long own = (m * heads + h) * job->capacity * dh;
            k = (rows_t){at ? job->cache_k : job->cache_k + own, at, dh};
            v = (rows_t){at ? job->cache_v : job->cache_v + own, at, dh};
        }
        for (long g = 0; g < group; g++) {
            long r = m * group + g;
            dots(job->q + r * s->d + h * dh, &k, len, dh, scale, scores);
            float inverse = softmax(scores, len, keep);
            weighted_sum(scores, &v, len, dh, inverse, job->out + r * s->d + h * dh);
        }
    }
    if (big) {
        free(scores);
        free(at);
    }
}

static void attention(const attention_job_t* job, int threads) {
    const decoder_t* s = job->s;
    long len = job->cross ? s->memory_len : job->len;
    long work = s->rows * s->d * len;
    speechseq_parallel(attention_part, job, work >= (1L << 15) ? threads : 1);
}

/* hidden = hidden + y (pre-LN), or LayerNorm(hidden + y) (post-LN). */
static void residual(const decoder_t* s, float* hidden, const float* y, int block, const layer_t* l) {
    long n = s->rows * s->d;
    for (long i = 0; i < n; i++) hidden[i] += y[i];
    if (!s->norm_first) layer_norm(hidden, s->rows, s->d, l->norm_w[block], l->norm_b[block], s->eps, hidden);
}

/* The input of a block: LayerNorm(hidden) before the block (pre-LN), or hidden itself. */
static const float* block_input(const decoder_t* s, const float* hidden, int block, const layer_t* l, float* a) {
    if (!s->norm_first) return hidden;
    layer_norm(hidden, s->rows, s->d, l->norm_w[block], l->norm_b[block], s->eps, a);
    return a;
}

/* Run every layer on hidden (rows, d) in place. cache: the KVCache buffer (2, layers, rows, H, capacity, Dh),
   read through the row table `origin` (see attention_job_t; NULL: each row's own); this step's keys and
   values are written at `position` of each row's own buffer row, and attention reads positions 0..position. */
void speechseq_decoder_step(const decoder_t* s, float* hidden, float* cache, long capacity, const int* origin,
                            long position, int threads) {
    long M = s->rows, D = s->d, H = s->heads, dh = D / H;
    float *a = s->work, *q = a + M * D, *k = q + M * D, *v = k + M * D, *ctx = v + M * D, *inner = ctx + M * D;
    long layer_size = M * H * capacity * dh;
    for (long i = 0; i < s->layers; i++) {
        const layer_t* l = s->layer + i;
        float* cache_k = cache + i * layer_size;
        float* cache_v = cache + (s->layers + i) * layer_size;

        const float* x = block_input(s, hidden, 0, l, a);
        linear(&l->q, x, M, q, threads);
        linear(&l->k, x, M, k, threads);
        linear(&l->v, x, M, v, threads);
        for (long r = 0; r < M; r++)
            for (long h = 0; h < H; h++) {
                long at = ((r * H + h) * capacity + position) * dh;
                memcpy(cache_k + at, k + r * D + h * dh, dh * sizeof(float));
                memcpy(cache_v + at, v + r * D + h * dh, dh * sizeof(float));
            }
        attention_job_t self = {s, q, ctx, cache_k, cache_v, origin, capacity, position + 1, NULL};
        attention(&self, threads);
        linear(&l->o, ctx, M, k, threads);
        residual(s, hidden, k, 0, l);

        x = block_input(s, hidden, 1, l, a);
        linear(&l->cross_q, x, M, q, threads);
        attention_job_t cross = {s, q, ctx, NULL, NULL, NULL, 0, 0, l};
        attention(&cross, threads);
        linear(&l->cross_o, ctx, M, k, threads);
        residual(s, hidden, k, 1, l);

        x = block_input(s, hidden, 2, l, a);
        linear(&l->fc1, x, M, inner, threads);
        activate(inner, M * s->ffn, s->activation);
        linear(&l->fc2, inner, M, k, threads);
        residual(s, hidden, k, 2, l);
    }
}
