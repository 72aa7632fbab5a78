/* symgraph's trainer (sg_train.h) around a model written by hand, with no
 * generated code: linear regression, pred = x . w + b, with the loss
 * mean((pred - y)^2) and one metric, mse. The model follows the interface a
 * generated model.h declares, under the name toy; the flags' table comes from
 * flags.h, which the test writes from the one list of flags. */
#define _XOPEN_SOURCE 700

#include <stddef.h>
#include <stdint.h>

#define TOY_BATCH 8
#define TOY_MAX_RANK 2
#define TOY_METRIC_SUMS 1
#define FEATURES 3

typedef double toy_real;

enum { toy_param_w, toy_param_b, toy_num_params };
enum { toy_input_x, toy_input_y, toy_num_inputs };
enum { toy_output_pred, toy_num_outputs };

typedef struct {
    const char *name;
    int rank;
    long dims[TOY_MAX_RANK];
    int batched;
    long size;
    int is_int;
    long bound;
} toy_leaf;

static const toy_leaf toy_params[] = {{"w", 1, {FEATURES}, 0, FEATURES, 0, 0}, {"b", 0, {0}, 0, 1, 0, 0}, {NULL, 0, {0}, 0, 0, 0, 0}};
static const toy_leaf toy_inputs[] = {{"x", 2, {TOY_BATCH, FEATURES}, 1, FEATURES, 0, 0}, {"y", 1, {TOY_BATCH}, 1, 1, 0, 0},
                                      {NULL, 0, {0}, 0, 0, 0, 0}};
static const toy_leaf toy_outputs[] = {{"pred", 1, {TOY_BATCH}, 1, 1, 0, 0}, {NULL, 0, {0}, 0, 0, 0, 0}};

static uint64_t toy_random_bits(uint64_t seed, uint64_t stream, uint64_t i)
{
    uint64_t z = seed + 0x9E3779B97F4A7C15u * (stream + 1) + 0x9E3779B97F4A7C15u * (i + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static void toy_init_params(toy_real *const params[], uint64_t seed)
{
    for (long j = 0; j < FEATURES; j++)
        params[toy_param_w][j] = 0.1 * ((double)(toy_random_bits(seed, 0, (uint64_t)j) >> 11) * 0x1p-53 - 0.5);
    params[toy_param_b][0] = 0;
}

static toy_real prediction(toy_real *const params[], const void *const inputs[], long i)
{
    const toy_real *x = inputs[toy_input_x];
    toy_real p = params[toy_param_b][0];
    for (long j = 0; j < FEATURES; j++)
        p += x[i * FEATURES + j] * params[toy_param_w][j];
    return p;
}

static int toy_forward(toy_real *const params[], const void *const inputs[], long n, toy_real *const outputs[])
{
    if (n < 1 || n > TOY_BATCH)
        return -1;
    for (long i = 0; i < n; i++)
        outputs[toy_output_pred][i] = prediction(params, inputs, i);
    return 0;
}

static int toy_evaluate(toy_real *const params[], const void *const inputs[], long n, double *loss_value, double *metric_sums)
{
    if (n < 1 || n > TOY_BATCH)
        return -1;
    const toy_real *y = inputs[toy_input_y];
    double total = 0;
    for (long i = 0; i < n; i++)
        total += (prediction(params, inputs, i) - y[i]) * (prediction(params, inputs, i) - y[i]);
    *loss_value = total / (double)n;
    metric_sums[0] = total;
    return 0;
}

static int toy_loss_and_grads(toy_real *const params[], const void *const inputs[], long n, int training, uint64_t seed,
                              double *loss_value, toy_real *const grads[])
{
    (void)training, (void)seed;  /* no dropout */
    if (n < 1 || n > TOY_BATCH)
        return -1;
    const toy_real *x = inputs[toy_input_x], *y = inputs[toy_input_y];
    double total = 0;
    for (long j = 0; j < FEATURES; j++)
        grads[toy_param_w][j] = 0;
    grads[toy_param_b][0] = 0;
    for (long i = 0; i < n; i++) {
        const toy_real error = prediction(params, inputs, i) - y[i];
        total += error * error;
        for (long j = 0; j < FEATURES; j++)
            grads[toy_param_w][j] += 2 * error * x[i * FEATURES + j] / (toy_real)n;
        grads[toy_param_b][0] += 2 * error / (toy_real)n;
    }
    *loss_value = total / (double)n;
    return 0;
}

static int toy_loss_and_grads_of_share(toy_real *const params[], const void *const inputs[], long n, long first, long total,
                                       int training, uint64_t seed, double *loss_value, toy_real *const grads[])
{
    if (first < 0 || first + n > total)
        return -1;
    return toy_loss_and_grads(params, inputs, n, training, seed, loss_value, grads);
}

static int toy_sgd_step(toy_real *const params[], const void *const inputs[], long n, int training, uint64_t seed, toy_real lr,
                        double *loss_value, toy_real *const grads[])
{
    if (toy_loss_and_grads(params, inputs, n, training, seed, loss_value, grads) != 0)
        return -1;
    for (int k = 0; k < toy_num_params; k++)
        for (long i = 0; i < toy_params[k].size; i++)
            params[k][i] -= lr * grads[k][i];
    return 0;
}

/* -- the trainer's definitions (see sg_train.h) -------------------------------------- */
#define SG_MODEL(name) toy_##name
#define SG_CHECK(name) toy_##name
typedef toy_real real;
#define SQRT sqrt
#define SG_BATCH TOY_BATCH
#define SG_MAX_RANK TOY_MAX_RANK
#define SG_METRIC_SUMS TOY_METRIC_SUMS
#define SG_NAME "toy"
#define SG_DTYPE "float64"

#define OPTIMIZER "sgd"
#define LEARNING_RATE 0.05
#define MOMENTUM 0.0
#define NESTEROV 0
#define WEIGHT_DECAY 0.0
#define BETA1 0.9
#define BETA2 0.999
#define EPSILON 1e-08
#define EPOCHS 20
#define BATCH_SIZE 8
#define SEED 0
#define SCHEDULE "constant"
#define WARMUP 0
#define DECAY 0.1
#define STEP_EPOCHS 10
#define CLIP_NORM 0.0
#define PATIENCE 0

#define SHUFFLE_STREAM 1048576u
#define GRADCHECK_STREAM (1048576u * 2)
#define SCORED 1
#define METRICS 1
#define METRIC_LIST {"mse", "mse", 1, 0},
#define HIGHER_IS_BETTER 0
#define MERGED_BATCH 0
#define BATCHED 1
#define CLASS_AXIS 0
#define COUPLING NULL

#include "flags.h"

static const char *const usage = "usage: toy --data DIR [FLAG VALUE]...\n";
static const char *const normalized_by_spec[] = {NULL};
static const char *const targets[] = {"y", NULL};
static const int forward_reads[] = {1, 0, 0};

#include "sg_train.h"
