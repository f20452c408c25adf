/*
 * What the two attention kernels (attention.c with AVX-512, avx2/attention.c with AVX2) share: the job, and
 * the loop that hands its (sequence, head) tasks to PyTorch's OpenMP threads, longest sequences first.
 * Loaded beside PyTorch, the kernels use PyTorch's own OpenMP runtime (same soname), so these threads are
 * the ones PyTorch's GEMMs just used, not a second set competing for the same cores.
 */
#ifndef OPENALBERT_ATTENTION_TASKS_H
#define OPENALBERT_ATTENTION_TASKS_H

#include <stdint.h>
#include <stdlib.h>

typedef struct {
    const void *qkv;
    void *out;
    int bf16;
    const int64_t *starts, *lengths, *order; /* order: sequences, longest first */
    int64_t n_seq, heads, head_dim, max_len;
    float scale;
    const float *rel;   /* relative_key distance table (2P - 1, head_dim), row P - 1 + i - j; or NULL */
    int64_t rel_center; /* P - 1 */
    int64_t next_task;  /* taken with an atomic add */
    int failed;
} Job;

static inline int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

/* Runs task(job, sequence, head, buffer) for every sequence and head, each thread with its own buffer of
 * `floats` floats. Returns 0, or 1 when a thread could not get its buffer (out is then incomplete). */
static int run_tasks(Job *job, void (*task)(const Job *, int64_t, int64_t, float *), size_t floats,
                     int threads) {
    const int64_t tasks = job->n_seq * job->heads;
#pragma omp parallel num_threads(threads < 1 ? 1 : threads)
    {
        float *buf = (float *)aligned_alloc(64, sizeof(float) * ((floats + 15) & ~(size_t)15));
        if (buf == NULL) {
            __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
        } else {
            for (;;) { /* each thread takes the next (sequence, head) */
                int64_t t = __atomic_fetch_add(&job->next_task, 1, __ATOMIC_RELAXED);
                if (t >= tasks) break;
                task(job, job->order[t / job->heads], t % job->heads, buf);
            }
            free(buf);
        }
    }
    return job->failed;
}

#endif
