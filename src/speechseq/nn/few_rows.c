/* Products of a few rows by a float32 weight, as a decoding step makes them (AVX2 + FMA).

   y (M, N) = x (M, K) @ weight.T + bias, for a weight stored (out, in) as nn.Linear keeps it, or (in, out).
   Each block of rows runs over a narrow panel of weight columns while the panel is in L1, so every weight
   is read from memory once for all rows (MKL reads it about once per two rows at 2-8 rows), and the
   accumulators are split across output columns and rows so that no FMA waits on the one before it.
   One row reads an (out, in) weight row after row, in memory order, which the prefetchers stream best.
   Columns are shared out between threads in equal contiguous ranges; each thread writes only its own.
   The threads are this file's own (not OpenMP's, whose pool hangs a forked child): they spin briefly
   between products, so the 50 products of a decoding step do not each pay for waking a sleeping thread,
   yielding the core to any other runnable thread while they spin, and then sleep.
   Built and loaded by nn/native.py; the sums run in another order than MKL's, so results agree with
   F.linear to float32 rounding, not bit for bit. */
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "native.h"

/* The sums of 8 accumulators at once, in order: a few hadds instead of a reduction each (hsum4, in
   native.h, does 4). */
static inline __m256 hsum8(const __m256* a) {
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

static inline void hsums(const __m256* a, int count, float* out) {
    int i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(out + i, hsum8(a + i));
    for (; i + 4 <= count; i += 4) _mm_storeu_ps(out + i, hsum4(a + i));
    for (; i < count; i++) out[i] = hsum(a[i]);
}

/* Weight stored (in, out): wt[k * N + n]. Rows m < MR of y[:, n:n + 8 * NV] = x @ wt + b. */
#define KN(MR, NV)                                                                                    \
    static void kn_##MR##_##NV(const float* x, long K, const float* wt, long N, const float* b,      \
                               float* y, long n) {                                                    \
        __m256 acc[MR][NV];                                                                           \
        for (int m = 0; m < MR; m++)                                                                  \
            for (int v = 0; v < NV; v++) acc[m][v] = b ? _mm256_loadu_ps(b + n + 8 * v) : _mm256_setzero_ps(); \
        const float* w = wt + n;                                                                      \
        for (long k = 0; k < K; k++, w += N) {                                                        \
            __m256 wv[NV];                                                                            \
            for (int v = 0; v < NV; v++) wv[v] = _mm256_loadu_ps(w + 8 * v);                          \
            for (int m = 0; m < MR; m++) {                                                            \
                __m256 xv = _mm256_broadcast_ss(x + m * K + k);                                       \
                for (int v = 0; v < NV; v++) acc[m][v] = _mm256_fmadd_ps(xv, wv[v], acc[m][v]);      \
            }                                                                                         \
        }                                                                                             \
        for (int m = 0; m < MR; m++)                                                                  \
            for (int v = 0; v < NV; v++) _mm256_storeu_ps(y + m * N + n + 8 * v, acc[m][v]);         \
    }
KN(1, 8) KN(2, 4) KN(1, 2) KN(2, 2) KN(3, 2) KN(4, 2) KN(5, 2) KN(6, 2)

#define PREFETCH 2048 /* floats ahead of each weight row's stream */

/* Weight stored (out, in): w[n * K + k]. Rows m < MR of y[:, n:n + NO] = x @ w.T + b. */
#define NK(MR, NO)                                                                                    \
    static void nk_##MR##_##NO(const float* x, long K, const float* w, long N, const float* b,       \
                               float* y, long n) {                                                    \
        __m256 acc[MR][NO];                                                                           \
        for (int m = 0; m < MR; m++)                                                                  \
            for (int o = 0; o < NO; o++) acc[m][o] = _mm256_setzero_ps();                             \
        long k = 0;                                                                                   \
        for (; k + 8 <= K; k += 8) {                                                                  \
            __m256 wv[NO];                                                                            \
            if ((k & 15) == 0)                                                                        \
                for (int o = 0; o < NO; o++)                                                          \
                    _mm_prefetch((const char*)(w + (n + o) * K + k + PREFETCH), _MM_HINT_T0); \
            for (int o = 0; o < NO; o++) wv[o] = _mm256_loadu_ps(w + (n + o) * K + k);                \
            for (int m = 0; m < MR; m++) {                                                            \
                __m256 xv = _mm256_loadu_ps(x + m * K + k);                                           \
                for (int o = 0; o < NO; o++) acc[m][o] = _mm256_fmadd_ps(xv, wv[o], acc[m][o]);       \
            }                                                                                         \
        }                                                                                             \
        float sums[MR * NO];                                                                          \
        hsums(&acc[0][0], MR * NO, sums);                                                             \
        for (int m = 0; m < MR; m++)                                                                  \
            for (int o = 0; o < NO; o++) {                                                            \
                float s = sums[m * NO + o];                                                           \
                for (long r = k; r < K; r++) s += x[m * K + r] * w[(n + o) * K + r];                  \
                y[m * N + n + o] = s + (b ? b[n + o] : 0.f);                                          \
            }                                                                                         \
    }
NK(2, 4) NK(1, 1) NK(1, 2) NK(2, 2) NK(3, 2) NK(4, 2) NK(5, 2) NK(6, 2)

typedef void (*block_fn)(const float*, long, const float*, long, const float*, float*, long);
static const block_fn kn_rows[7] = {0, kn_1_2, kn_2_2, kn_3_2, kn_4_2, kn_5_2, kn_6_2};
static const block_fn nk_rows[7] = {0, nk_1_2, nk_2_2, nk_3_2, nk_4_2, nk_5_2, nk_6_2};

/* Rows split into blocks of at most 6, as even as can be; each block runs over one panel of columns while
   the panel is in L1, so the weight is read from memory once for all rows. */
static void over_row_blocks(const block_fn* fns, const float* x, long M, long K, const float* w, long N,
                            const float* b, float* y, long n) {
    long blocks = (M + 5) / 6, m0 = 0;
    for (long i = 0; i < blocks; i++) {
        long r = (M - m0) / (blocks - i);
        fns[r](x + m0 * K, K, w, N, b, y + m0 * N, n);
        m0 += r;
    }
}

/* Columns [n0, n1) of every row of y = x @ wt + b, wt stored (in, out). */
static void kn_cols(const float* x, long M, long K, const float* wt, long N, const float* b, float* y, long n0, long n1) {
    long n = n0;
    if (M == 1) for (; n + 64 <= n1; n += 64) kn_1_8(x, K, wt, N, b, y, n);
    if (M == 2) for (; n + 32 <= n1; n += 32) kn_2_4(x, K, wt, N, b, y, n);
    for (; n + 16 <= n1; n += 16) over_row_blocks(kn_rows, x, M, K, wt, N, b, y, n);
    for (; n < n1; n++)
        for (long m = 0; m < M; m++) {
            float s = 0.f;
            for (long k = 0; k < K; k++) s += x[m * K + k] * wt[k * N + n];
            y[m * N + n] = s + (b ? b[n] : 0.f);
        }
}

/* One row, weight stored (out, in): each weight row is read start to end, so the whole weight streams
   in memory order; four accumulators along k keep the FMAs independent. */
static void nk_one_row(const float* x, long K, const float* w, const float* b, float* y, long n0, long n1) {
    __m256 part[8];
    long n = n0;
    while (n < n1) {
        int count = n1 - n < 8 ? (int)(n1 - n) : 8;
        for (int o = 0; o < count; o++) {
            const float* row = w + (n + o) * K;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            long k = 0;
            for (; k + 32 <= K; k += 32) {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(row + k), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), _mm256_loadu_ps(row + k + 8), a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 16), _mm256_loadu_ps(row + k + 16), a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 24), _mm256_loadu_ps(row + k + 24), a3);
            }
            for (; k + 8 <= K; k += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(row + k), a0);
            part[o] = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
            float tail = 0.f;
            for (; k < K; k++) tail += x[k] * row[k];
            part[o] = _mm256_add_ps(part[o], _mm256_setr_ps(tail, 0, 0, 0, 0, 0, 0, 0));
        }
        float sums[8];
        hsums(part, count, sums);
        for (int o = 0; o < count; o++) y[n + o] = sums[o] + (b ? b[n + o] : 0.f);
        n += count;
    }
}

/* Columns [n0, n1) of every row of y = x @ w.T + b, w stored (out, in). */
static void nk_cols(const float* x, long M, long K, const float* w, long N, const float* b, float* y, long n0, long n1) {
    long n = n0;
    if (M == 1) {
        nk_one_row(x, K, w, b, y, n0, n1);
        return;
    }
    if (M == 2) for (; n + 4 <= n1; n += 4) nk_2_4(x, K, w, N, b, y, n);
    for (; n + 2 <= n1; n += 2) over_row_blocks(nk_rows, x, M, K, w, N, b, y, n);
    for (; n < n1; n++)
        for (long m = 0; m < M; m++) nk_1_1(x + m * K, K, w, N, b, y + m * N, n);
}

typedef struct {
    const float *x, *w, *b;
    float* y;
    long M, K, N, unit, units;
    int transposed;
} job_t;

static void run_part(const void* arg, int part, int parts) {
    const job_t* job = arg;
    long n0 = (job->units * part / parts) * job->unit;
    long n1 = (job->units * (part + 1) / parts) * job->unit;
    if (n1 > job->N) n1 = job->N;
    if (job->transposed) kn_cols(job->x, job->M, job->K, job->w, job->N, job->b, job->y, n0, n1);
    else nk_cols(job->x, job->M, job->K, job->w, job->N, job->b, job->y, n0, n1);
}

/* The pool: workers 1..started-1 (the caller is part 0). A task is published by bumping `generation`;
   every started worker then runs its part (if it has one) and counts itself off `remaining`. */
#define MAX_THREADS 256
#define SPIN_NS 200000L
static part_fn current_fn;
static const void* current_arg;
static int current_parts;
static atomic_long generation;
static atomic_int remaining, sleepers;
static int started = 1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER, busy = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int atfork_registered;
static long first_generation[MAX_THREADS];

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void* worker(void* arg) {
    int id = (int)(long)arg;
    long seen = first_generation[id]; /* the generation before the job this worker was started for */
    for (;;) {
        long since = now_ns();
        for (long spins = 1; atomic_load(&generation) == seen; spins++) {
            _mm_pause();
            if (spins % 64) continue;
            if (now_ns() - since < SPIN_NS) {
                sched_yield();
                continue;
            }
            pthread_mutex_lock(&lock);
            atomic_fetch_add(&sleepers, 1);
            while (atomic_load(&generation) == seen) pthread_cond_wait(&wake, &lock);
            atomic_fetch_sub(&sleepers, 1);
            pthread_mutex_unlock(&lock);
        }
        seen = atomic_load(&generation);
        if (id < current_parts) current_fn(current_arg, id, current_parts);
        atomic_fetch_sub(&remaining, 1);
    }
    return NULL;
}

/* In a forked child only the forking thread exists: start the pool afresh. */
static void after_fork_in_child(void) {
    started = 1;
    atomic_store(&sleepers, 0);
    pthread_mutex_init(&lock, NULL);
    pthread_mutex_init(&busy, NULL);
    pthread_cond_init(&wake, NULL);
}

static int grow_pool(int threads) {
    if (!atfork_registered) {
        pthread_atfork(NULL, NULL, after_fork_in_child);
        atfork_registered = 1;
    }
    while (started < threads) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        first_generation[started] = atomic_load(&generation);
        int failed = pthread_create(&thread, &attr, worker, (void*)(long)started);
        pthread_attr_destroy(&attr);
        if (failed) break;
        started++;
    }
    return started;
}

/* fn(arg, part, parts) for every part < parts, on up to `threads` threads (the caller runs part 0). One
   thread, or another caller holding the pool (a nested call): every part runs here, one after another. */
void speechseq_parallel(part_fn fn, const void* arg, int threads) {
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads <= 1 || pthread_mutex_trylock(&busy) != 0) {
        fn(arg, 0, 1);
        return;
    }
    current_fn = fn;
    current_arg = arg;
    current_parts = grow_pool(threads) < threads ? started : threads;
    atomic_store(&remaining, started - 1);
    atomic_fetch_add(&generation, 1);
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&lock);
    }
    fn(arg, 0, current_parts);
    while (atomic_load(&remaining) > 0) _mm_pause();
    pthread_mutex_unlock(&busy);
}

/* y (M, N) = x (M, K) @ weight.T + b; transposed != 0: weight stored (K, N), else (N, K). */
void speechseq_few_rows_linear(const float* x, long M, long K, const float* w, long N, int transposed,
                               const float* b, float* y, int threads) {
    job_t job = {x, w, b, y, M, K, N, transposed ? 64 : 8, 0, transposed};
    job.units = (N + job.unit - 1) / job.unit;
    if (threads > job.units) threads = (int)job.units;
    speechseq_parallel(run_part, &job, threads);
}
