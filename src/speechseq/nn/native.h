/* What the native sources share: the thread pool (few_rows.c) and the few-row product. */
#ifndef SPEECHSEQ_NATIVE_H
#define SPEECHSEQ_NATIVE_H

typedef void (*part_fn)(const void* arg, int part, int parts);

void speechseq_parallel(part_fn fn, const void* arg, int threads);
void speechseq_few_rows_linear(const float* x, long M, long K, const float* w, long N, int transposed,
                               const float* b, float* y, int threads);

#endif
