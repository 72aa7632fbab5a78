/* The C runtime on its own: sg_kernels.h compiled with every kernel (the
 * build defines SG_USE_* for each, and SG_FLOAT32 or not), and a few kernels
 * checked against plain loops. tests/test_runtime.py builds and runs it, with
 * -Wall -Wextra -Werror and the sanitizers. Exit 0 when every check holds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef SG_FLOAT32
typedef float real;
#define TOLERANCE 1e-4
#else
typedef double real;
#define TOLERANCE 1e-12
#endif
#include "sg_kernels.h"

static int failures;

static void check(const char *what, double got, double want)
{
    if (!(fabs(got - want) <= TOLERANCE * (1 + fabs(want)))) {
        printf("%s: got %.17g, want %.17g\n", what, got, want);
        failures++;
    }
}

static real value(long i)  /* deterministic values in [-1, 1) */
{
    return (real)((double)((i * 2654435761u) % 2000) / 1000.0 - 1.0);
}

static void test_matmul(long m, long k, long p)
{
    real *a = malloc(sizeof(real) * m * k), *b = malloc(sizeof(real) * k * p), *c = malloc(sizeof(real) * m * p);
    for (long i = 0; i < m * k; i++)
        a[i] = value(i);
    for (long i = 0; i < k * p; i++)
        b[i] = value(i + 7);
    sg_matmul(m, k, p, a, k, 1, b, p, 1, c);
    for (long i = 0; i < m; i++)
        for (long j = 0; j < p; j++) {
            double want = 0;
            for (long q = 0; q < k; q++)
                want += (double)a[i * k + q] * b[q * p + j];
            check("matmul", c[i * p + j], want);
        }
    free(a), free(b), free(c);
}

static void test_conv2d(long batch, long height, long width, long c_in, long c_out, long kh, long kw, long stride, long padding)
{
    const long out_h = (height + 2 * padding - kh) / stride + 1, out_w = (width + 2 * padding - kw) / stride + 1;
    real *x = malloc(sizeof(real) * batch * height * width * c_in), *k = malloc(sizeof(real) * kh * kw * c_in * c_out);
    real *y = malloc(sizeof(real) * batch * out_h * out_w * c_out);
    for (long i = 0; i < batch * height * width * c_in; i++)
        x[i] = value(i);
    for (long i = 0; i < kh * kw * c_in * c_out; i++)
        k[i] = value(i + 3);
    sg_conv2d(batch, height, width, c_in, out_h, out_w, c_out, kh, kw, stride, padding, x, k, y);
    for (long b = 0; b < batch; b++)
        for (long i = 0; i < out_h; i++)
            for (long j = 0; j < out_w; j++)
                for (long o = 0; o < c_out; o++) {
                    double want = 0;
                    for (long u = 0; u < kh; u++)
                        for (long v = 0; v < kw; v++)
                            for (long c = 0; c < c_in; c++) {
                                const long r = i * stride + u - padding, q = j * stride + v - padding;
                                if (r >= 0 && r < height && q >= 0 && q < width)
                                    want += (double)x[((b * height + r) * width + q) * c_in + c] * k[((u * kw + v) * c_in + c) * c_out + o];
                            }
                    check("conv2d", y[((b * out_h + i) * out_w + j) * c_out + o], want);
                }
    free(x), free(k), free(y);
}

static void test_layer_norm(void)
{
    real x[3 * 4], y[3 * 4];
    for (long i = 0; i < 12; i++)
        x[i] = i < 4 ? (real)2.5 : value(i);  /* the first row constant */
    sg_layer_norm(3, 4, 1, 1e-5, x, y);
    for (long r = 0; r < 3; r++) {
        double mean = 0, var = 0;
        for (long l = 0; l < 4; l++)
            mean += x[r * 4 + l] / 4.0;
        for (long l = 0; l < 4; l++)
            var += (x[r * 4 + l] - mean) * (x[r * 4 + l] - mean) / 4.0;
        for (long l = 0; l < 4; l++)
            check("layer_norm", y[r * 4 + l], (x[r * 4 + l] - mean) / sqrt(var + 1e-5));
    }
}

static void test_softmax_and_exp(void)
{
    real x[5] = {1000, -1000, 0, 3, 3}, y[5];
    sg_softmax(1, 5, 1, x, y);
    check("softmax of a large logit", y[0], 1);
    check("softmax of a small logit", y[1], 0);
    for (double t = -80; t <= 0; t += 0.37)
        check("exp_nonpositive", sg_exp_nonpositive((real)t) / exp((real)t), 1);
#ifdef SG_FLOAT32
    for (double t = -9; t <= 9; t += 0.013)
        check("tanh", sg_tanh((real)t), tanh((real)t));
#endif
}

int main(void)
{
    test_matmul(1, 1, 1);
    test_matmul(37, 129, 45);
    test_matmul(7, 300, 1030);
    test_conv2d(2, 5, 4, 3, 2, 3, 2, 1, 0);
    test_conv2d(3, 7, 6, 2, 4, 3, 3, 2, 1);
    test_conv2d(40, 4, 4, 3, 5, 3, 3, 1, 3);
    test_conv2d(1, 9, 8, 2, 3, 1, 1, 2, 0);
    test_layer_norm();
    test_softmax_and_exp();
    if (failures)
        printf("%d checks failed\n", failures);
    return failures != 0;
}
