/* Times training steps of a generated C model: loss and gradients on one
 * full batch and a plain SGD update (learning rate 1e-6, as the driver's),
 * through the model's sgd_step as the generated trainer takes them.
 *
 *   cc -O3 -march=native -std=c99 -DMODEL=mlp step_harness.c model.c -lm
 *   ./a.out DIR
 *
 * The parameters and inputs are raw little-endian arrays in DIR, written by
 * the driver: param_<i>.bin and input_<i>.bin in the model's enum order.
 * Reads a number of steps per line on stdin and answers each with the
 * seconds they took and the last loss, so that a driver can interleave
 * blocks of this model with other implementations. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "model.h"

#define JOIN_(a, b) a##b
#define JOIN(a, b) JOIN_(a, b)
#define API(x) JOIN(MODEL, x)

typedef API(_real) real_t;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *read_all(const char *dir, const char *kind, int index, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s_%d.bin", dir, kind, index);
    FILE *file = fopen(path, "rb");
    void *data = malloc(bytes);
    if (!file || !data || fread(data, 1, bytes, file) != bytes) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    fclose(file);
    return data;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const int num_params = API(_num_params), num_inputs = API(_num_inputs);
    real_t *params[API(_num_params) + 1], *grads[API(_num_params) + 1];
    const void *inputs[API(_num_inputs) + 1];
    long n = 1;
    for (int i = 0; i < num_inputs; i++)
        if (API(_inputs)[i].batched)
            n = API(_inputs)[i].dims[0];
    for (int i = 0; i < num_params; i++) {
        params[i] = read_all(argv[1], "param", i, (size_t)API(_params)[i].size * sizeof(real_t));
        grads[i] = malloc((size_t)API(_params)[i].size * sizeof(real_t));
    }
    for (int i = 0; i < num_inputs; i++) {
        const API(_leaf) *leaf = &API(_inputs)[i];
        const size_t count = (size_t)(leaf->batched ? n * leaf->size : leaf->size);
        inputs[i] = read_all(argv[1], "input", i, count * (leaf->is_int ? sizeof(int64_t) : sizeof(real_t)));
    }
    char line[64];
    long step = 0;
    while (fgets(line, sizeof line, stdin)) {
        const long steps = atol(line);
        double loss = 0;
        const double started = now();
        for (long s = 0; s < steps; s++, step++)
            API(_sgd_step)(params, inputs, n, 1, (uint64_t)step, (real_t)1e-6, &loss, grads);
        printf("%.9f %.9g\n", now() - started, loss);
        fflush(stdout);
    }
    return 0;
}
