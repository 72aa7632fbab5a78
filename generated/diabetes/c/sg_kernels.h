/* sg_kernels.h: symgraph's C kernels, the runtime of generated models.
 *
 * Plain C99 with GCC/Clang vector extensions. A model includes it once, after
 *   typedef float real;  (or double) and, for float, #define SG_FLOAT32,
 *   #define SG_USE_<KERNEL> for each kernel it calls (with the kernels those call),
 *   #define SG_FORWARD_ONLY for an inference library (no random numbers),
 *   #define SG_PARALLEL_ELEMENTS n: the loop length from which OpenMP splits a loop.
 * Every function is static: a float32 model and its float64 twin each include
 * it with their own `real`. */
#ifndef SG_KERNELS_H
#define SG_KERNELS_H

#ifdef SG_FLOAT32
#define SG_LIBM(name) name##f  /* libm in the model's precision: logf */
#define SG_CBLAS_GEMM cblas_sgemm
#else
#define SG_LIBM(name) name
#define SG_CBLAS_GEMM cblas_dgemm
#endif
/* What the kernels call in turn: a model defines only the kernels it calls itself. */
#if !defined(SG_USE_GEMM) && (defined(SG_USE_MATMUL) || defined(SG_USE_MATMUL_BIAS) || defined(SG_USE_MATMUL_SUM) || \
    defined(SG_USE_CONV1D) || defined(SG_USE_CONV1D_BACKWARD_KERNEL) || \
    defined(SG_USE_CONV1D_BACKWARD_INPUT) || defined(SG_USE_CONV2D) || \
    defined(SG_USE_CONV2D_BACKWARD_KERNEL) || defined(SG_USE_CONV2D_BACKWARD_INPUT))
#define SG_USE_GEMM
#endif
#if !defined(SG_USE_PARALLEL) && (defined(SG_USE_MATMUL_BIAS) || defined(SG_USE_SOFTMAX_CROSS_ENTROPY_GRAD) || defined(SG_USE_EMBEDDING) || \
    defined(SG_USE_MAX_POOL1D) || defined(SG_USE_AVG_POOL1D) || defined(SG_USE_MAX_POOL1D_BACKWARD) || \
    defined(SG_USE_AVG_POOL1D_BACKWARD) || defined(SG_USE_MAX_BACKWARD) || defined(SG_USE_MAX_POOL2D) || \
    defined(SG_USE_AVG_POOL2D) || defined(SG_USE_MAX_POOL2D_BACKWARD) || \
    defined(SG_USE_AVG_POOL2D_BACKWARD) || defined(SG_USE_UPSAMPLE2D) || defined(SG_USE_LAYER_NORM) || \
    defined(SG_USE_LAYER_NORM_BACKWARD))
#define SG_USE_PARALLEL
#endif
#if !defined(SG_USE_EXP_SHIFTED) && (defined(SG_USE_SOFTMAX) || defined(SG_USE_LOG_SOFTMAX) || defined(SG_USE_CROSS_ENTROPY) || \
    defined(SG_USE_SOFTMAX_CROSS_ENTROPY_GRAD))
#define SG_USE_EXP_SHIFTED
#endif
#if !defined(SG_USE_EXP_NONPOSITIVE) && (defined(SG_USE_TANH) || defined(SG_USE_EXP_SHIFTED))
#define SG_USE_EXP_NONPOSITIVE
#endif

#if defined(SG_USE_PARALLEL) && !defined(SG_PARALLEL_ELEMENTS)
#error "define SG_PARALLEL_ELEMENTS, the loop length from which OpenMP splits a loop"
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(SG_BLAS) && defined(SG_USE_GEMM)
#include <cblas.h>
#endif

#ifdef SG_USE_GEMM
#ifdef _OPENMP
#include <omp.h>
#endif

#endif
#ifdef SG_USE_PARALLEL
/* Large loops run on all cores in an OpenMP build, split where each step
 * writes elements of its own: the results are the same. A kernel's loop is
 * split when it covers at least SG_PARALLEL_ELEMENTS elements. */
#ifdef _OPENMP
#define SG_PRAGMA(text) _Pragma(#text)
#define SG_PARALLEL_FOR _Pragma("omp parallel for")
#define SG_PARALLEL_FOR_LARGE(elements) SG_PRAGMA(omp parallel for if ((elements) >= SG_PARALLEL_ELEMENTS))
#else
#define SG_PARALLEL_FOR
#define SG_PARALLEL_FOR_LARGE(elements)
#endif

#endif
#if !defined(SG_FORWARD_ONLY)
#define SG_GOLDEN 0x9E3779B97F4A7C15u

/* SplitMix64's finaliser: a bijection on 64-bit words that mixes every bit. */
static uint64_t sg_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* The key of stream `stream` under `seed`. */
static uint64_t sg_key(uint64_t seed, uint64_t stream)
{
    return sg_mix(seed + SG_GOLDEN * (stream + 1));
}

/* Value i of the stream with that key. */
static uint64_t sg_bits(uint64_t key, uint64_t i)
{
    return sg_mix(key + SG_GOLDEN * (i + 1));
}
#endif
#if defined(SG_USE_DROPOUT_MASK) || defined(SG_USE_FILL_NORMAL) || defined(SG_USE_FILL_UNIFORM)

/* Value i of the stream with that key, uniform on [0, 1) from its top 53 bits. */
static double sg_uniform(uint64_t key, uint64_t i)
{
    return (double)(sg_bits(key, i) >> 11) * 0x1p-53;
}
#endif
#ifdef SG_USE_FILL

static void sg_fill(real *out, long count, double value)
{
    for (long i = 0; i < count; i++)
        out[i] = (real)value;
}
#endif
#ifdef SG_USE_FILL_NORMAL

/* scale * N(0, 1), by Box-Muller on the pair of draws (2i, 2i+1). */
static void sg_fill_normal(real *out, long count, uint64_t seed, uint64_t stream, double scale)
{
    const uint64_t key = sg_key(seed, stream);
    for (long i = 0; i < count; i++) {
        const double u0 = sg_uniform(key, 2 * (uint64_t)i), u1 = sg_uniform(key, 2 * (uint64_t)i + 1);
        out[i] = (real)(scale * (sqrt(-2.0 * log1p(-u0)) * cos(2.0 * 3.141592653589793 * u1)));
    }
}
#endif
#ifdef SG_USE_FILL_UNIFORM

/* Uniform on [-scale, scale). */
static void sg_fill_uniform(real *out, long count, uint64_t seed, uint64_t stream, double scale)
{
    const uint64_t key = sg_key(seed, stream);
    for (long i = 0; i < count; i++)
        out[i] = (real)(scale * (2.0 * sg_uniform(key, (uint64_t)i) - 1.0));
}
#endif
#ifdef SG_USE_DROPOUT_MASK

/* Inverted dropout: `scale` = 1/(1-p) with probability 1-p, else 0; all ones
 * outside training. The mask is [outer, rows, inner] around the batch axis, its
 * rows examples [first, first + rows) of a batch of `total`: each element draws
 * the number of its place in the whole batch's mask, so a share of a batch (in
 * data-parallel training) gets the masks the whole batch would. */
static void sg_dropout_mask(long outer, long rows, long inner, long first, long total, double p, real scale, int training,
    uint64_t seed, uint64_t stream, real *out)
{
    const uint64_t key = sg_key(seed, stream);
    for (long o = 0; o < outer; o++)
        for (long r = 0; r < rows; r++) {
            const uint64_t at = (uint64_t)(o * total + first + r) * (uint64_t)inner;
            for (long i = 0; i < inner; i++)
                *out++ = !training ? 1 : sg_uniform(key, at + (uint64_t)i) >= p ? scale : 0;
        }
}
#endif
#ifdef SG_USE_MATVEC

/* out[i] = sum_j m[i][j] v[j]: an r x c matrix times a vector, with no r x c
 * array of products between. */
static void sg_matvec(long rows, long cols, const real *m, const real *v, real *out)
{
    for (long i = 0; i < rows; i++) {
        real total = 0;
        for (long j = 0; j < cols; j++)
            total += m[i * cols + j] * v[j];
        out[i] = total;
    }
}
#endif
#ifdef SG_USE_VECMAT

/* out[j] = sum_i v[i] m[i][j]: a vector times an r x c matrix, row by row. */
static void sg_vecmat(long rows, long cols, const real *v, const real *m, real *out)
{
    for (long j = 0; j < cols; j++)
        out[j] = 0;
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j++)
            out[j] += v[i] * m[i * cols + j];
}
#endif
#ifdef SG_USE_GEMM

/* The matrix product is the BLIS design in portable C: panels of B (KC x NC)
 * and of A (MC x KC) are packed so the micro-kernel reads both contiguously,
 * and the micro-kernel keeps an MR x NR tile of C in vector registers while
 * KC rank-1 updates stream through it. Vectors are GCC/Clang vector
 * extensions sized for the widest unit the build targets (AVX-512, AVX or
 * SSE; -march=native picks it), so no intrinsics are needed. Every c[i][j]
 * sums over k in order, starting from its old value, so the result does not
 * depend on the blocking or on the number of threads. */
#if defined(__AVX512F__)
#define SG_VECTOR_BYTES 64
enum { SG_MR = 12 };
#elif defined(__AVX__)
#define SG_VECTOR_BYTES 32
enum { SG_MR = 6 };
#else
#define SG_VECTOR_BYTES 16
enum { SG_MR = 4 };
#endif
/* Aligned like real, and allowed to alias it, so that a vector is read from and
 * written to any real array by assignment. Through memcpy, or as a 64-byte
 * aligned type, GCC kept the tile on the stack, at a third of the speed. */
typedef real sg_vector __attribute__((vector_size(SG_VECTOR_BYTES), aligned(sizeof(real)), may_alias));
enum { SG_VL = SG_VECTOR_BYTES / sizeof(real), SG_NR = 2 * SG_VL, SG_KC = 256, SG_MC = 96, SG_NC = 1024 };

/* Packing buffers, one pair per thread. */
static real sg_packed_a[SG_MC * SG_KC], sg_packed_b[SG_KC * SG_NC];
#ifdef _OPENMP
#pragma omp threadprivate(sg_packed_a, sg_packed_b)
#endif

/* GCC contracts a*b + c into one fused multiply-add only when told; Clang
 * must be told to use 512-bit vectors where it prefers 256. Inlined into a
 * large caller, the tile no longer stayed in registers: never inline it. */
#if defined(__clang__)
#define SG_MICRO_KERNEL __attribute__((noinline, min_vector_width(SG_VECTOR_BYTES * 8)))
#elif defined(__GNUC__)
#define SG_MICRO_KERNEL __attribute__((noinline, optimize("fp-contract=fast")))
#else
#define SG_MICRO_KERNEL
#endif

/* c[SG_MR x SG_NR] = (load ? c : 0) + ap @ bp over kc, ap packed MR-wide and bp NR-wide;
 * only the first `rows` rows of c are read and written (ap is zero past them). */
SG_MICRO_KERNEL
static void sg_micro_kernel(long kc, const real *restrict ap, const real *restrict bp, real *restrict c, long ldc, int load,
                        long rows)
{
    sg_vector acc0[SG_MR];
    sg_vector acc1[SG_MR];
    for (int i = 0; i < SG_MR && i < rows; i++) {  /* the tile is stored after kc steps: its lines are fetched meanwhile */
        __builtin_prefetch(c + i * ldc, 1, 3);
        __builtin_prefetch(c + i * ldc + 2 * SG_VL - 1, 1, 3);
    }
    for (int i = 0; i < SG_MR; i++) {
        acc0[i] = load && i < rows ? *(const sg_vector *)(c + i * ldc) : (sg_vector){0};
        acc1[i] = load && i < rows ? *(const sg_vector *)(c + i * ldc + SG_VL) : (sg_vector){0};
    }
    for (long p = 0; p < kc; p++) {
        const sg_vector b0 = *(const sg_vector *)(bp + 2 * p * SG_VL);
        const sg_vector b1 = *(const sg_vector *)(bp + 2 * p * SG_VL + SG_VL);
        for (int i = 0; i < SG_MR; i++) {
            const real a = ap[p * SG_MR + i];
            acc0[i] += a * b0;
            acc1[i] += a * b1;
        }
    }
    for (int i = 0; i < SG_MR && i < rows; i++) {
        *(sg_vector *)(c + i * ldc) = acc0[i];
        *(sg_vector *)(c + i * ldc + SG_VL) = acc1[i];
    }
}
/* The same one vector wide (bp packed SG_VL wide), for the last SG_VL columns
 * or fewer: the edge of 100 columns then costs 16 columns' work, not 32. */
SG_MICRO_KERNEL
static void sg_micro_kernel_narrow(long kc, const real *restrict ap, const real *restrict bp, real *restrict c, long ldc, int load,
                        long rows)
{
    sg_vector acc0[SG_MR];
    for (int i = 0; i < SG_MR && i < rows; i++) {  /* the tile is stored after kc steps: its lines are fetched meanwhile */
        __builtin_prefetch(c + i * ldc, 1, 3);
        __builtin_prefetch(c + i * ldc + 1 * SG_VL - 1, 1, 3);
    }
    for (int i = 0; i < SG_MR; i++) {
        acc0[i] = load && i < rows ? *(const sg_vector *)(c + i * ldc) : (sg_vector){0};
    }
    for (long p = 0; p < kc; p++) {
        const sg_vector b0 = *(const sg_vector *)(bp + p * SG_VL);
        for (int i = 0; i < SG_MR; i++) {
            const real a = ap[p * SG_MR + i];
            acc0[i] += a * b0;
        }
    }
    for (int i = 0; i < SG_MR && i < rows; i++) {
        *(sg_vector *)(c + i * ldc) = acc0[i];
    }
}
/* Both again with A's rows read where they lie (row i at ap + i*lda): a
 * row-major A needs no packing, which would be a transpose. */
SG_MICRO_KERNEL
static void sg_micro_kernel_rows(long kc, const real *restrict ap, long lda, const real *restrict bp, real *restrict c, long ldc, int load,
                        long rows)
{
    sg_vector acc0[SG_MR];
    sg_vector acc1[SG_MR];
    for (int i = 0; i < SG_MR && i < rows; i++) {  /* the tile is stored after kc steps: its lines are fetched meanwhile */
        __builtin_prefetch(c + i * ldc, 1, 3);
        __builtin_prefetch(c + i * ldc + 2 * SG_VL - 1, 1, 3);
    }
    for (int i = 0; i < SG_MR; i++) {
        acc0[i] = load && i < rows ? *(const sg_vector *)(c + i * ldc) : (sg_vector){0};
        acc1[i] = load && i < rows ? *(const sg_vector *)(c + i * ldc + SG_VL) : (sg_vector){0};
    }
    for (long p = 0; p < kc; p++) {
        const sg_vector b0 = *(const sg_vector *)(bp + 2 * p * SG_VL);
        const sg_vector b1 = *(const sg_vector *)(bp + 2 * p * SG_VL + SG_VL);
        for (int i = 0; i < SG_MR; i++) {
            const real a = ap[i * lda + p];
            acc0[i] += a * b0;
            acc1[i] += a * b1;
        }
    }
    for (int i = 0; i < SG_MR && i < rows; i++) {
        *(sg_vector *)(c + i * ldc) = acc0[i];
        *(sg_vector *)(c + i * ldc + SG_VL) = acc1[i];
    }
}
SG_MICRO_KERNEL
static void sg_micro_kernel_rows_narrow(long kc, const real *restrict ap, long lda, const real *restrict bp, real *restrict c, long ldc, int load,
                        long rows)
{
    sg_vector acc0[SG_MR];
    for (int i = 0; i < SG_MR && i < rows; i++) {  /* the tile is stored after kc steps: its lines are fetched meanwhile */
        __builtin_prefetch(c + i * ldc, 1, 3);
        __builtin_prefetch(c + i * ldc + 1 * SG_VL - 1, 1, 3);
    }
    for (int i = 0; i < SG_MR; i++) {
        acc0[i] = load && i < rows ? *(const sg_vector *)(c + i * ldc) : (sg_vector){0};
    }
    for (long p = 0; p < kc; p++) {
        const sg_vector b0 = *(const sg_vector *)(bp + p * SG_VL);
        for (int i = 0; i < SG_MR; i++) {
            const real a = ap[i * lda + p];
            acc0[i] += a * b0;
        }
    }
    for (int i = 0; i < SG_MR && i < rows; i++) {
        *(sg_vector *)(c + i * ldc) = acc0[i];
    }
}
/* One tile of c, by whichever kernel fits: A packed (lda 0) or in place (whole
 * tiles only: rows past the edge of A must not be read), and a tile cut short
 * by the last columns of c through a full tile on the stack. */
static void sg_tile(long kc, const real *ap, long lda, const real *bp, real *c, long ldc, long rows, long cols, int load)
{
    if ((rows == SG_MR || !lda) && (cols == SG_NR || cols == SG_VL)) {
        if (lda && cols == SG_NR)
            sg_micro_kernel_rows(kc, ap, lda, bp, c, ldc, load, rows);
        else if (lda)
            sg_micro_kernel_rows_narrow(kc, ap, lda, bp, c, ldc, load, rows);
        else if (cols == SG_NR)
            sg_micro_kernel(kc, ap, bp, c, ldc, load, rows);
        else
            sg_micro_kernel_narrow(kc, ap, bp, c, ldc, load, rows);
        return;
    }
    real tile[SG_MR * SG_NR];
    for (long i = 0; i < SG_MR; i++)
        for (long j = 0; j < SG_NR; j++)
            tile[i * SG_NR + j] = load && i < rows && j < cols ? c[i * ldc + j] : 0;
    sg_tile(kc, ap, lda, bp, tile, SG_NR, SG_MR, cols <= SG_VL ? SG_VL : SG_NR, 1);
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j++)
            c[i * ldc + j] = tile[i * SG_NR + j];
}

/* GCC 12 and Clang shuffle vector lanes portably; elsewhere the transpose below goes element by element. */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define SG_SHUFFLE 1
#endif
#endif

/* dst[q*dst_stride + i] = scale * src[i*src_stride + q] for i, q < 8: an 8 x 8 block transposed. */
static void sg_transpose8(real *restrict dst, long dst_stride, const real *restrict src, long src_stride, real scale)
{
#ifdef SG_SHUFFLE
    /* In registers, three rounds of shuffles. r: the rows. a[i], a[i+1]: rows i and i+1
     * interleaved. b[k] (b[4+k] for rows 4-7): rows 0-3 of columns k and k+4. */
    typedef real sg_row8 __attribute__((vector_size(8 * sizeof(real)), aligned(sizeof(real)), may_alias));
    sg_row8 r[8], a[8], b[8];
    for (int i = 0; i < 8; i++)
        r[i] = scale * *(const sg_row8 *)(src + i * src_stride);
    for (int i = 0; i < 8; i += 2) {
        a[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        a[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int base = 0; base < 8; base += 4)
        for (int k = 0; k < 2; k++) {
            b[base + 2 * k] = __builtin_shufflevector(a[base + k], a[base + k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            b[base + 2 * k + 1] = __builtin_shufflevector(a[base + k], a[base + k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int q = 0; q < 4; q++) {
        *(sg_row8 *)(dst + q * dst_stride) = __builtin_shufflevector(b[q], b[q + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        *(sg_row8 *)(dst + (q + 4) * dst_stride) = __builtin_shufflevector(b[q], b[q + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
#else
    for (long i = 0; i < 8; i++)
        for (long q = 0; q < 8; q++)
            dst[q * dst_stride + i] = scale * src[i * src_stride + q];
#endif
}

/* dst[p*width + i] = scale * src[i*across + p*along] for i < count (zero up to width), p < depth:
 * part of one panel, read in whichever order walks src contiguously. A scale of 1 copies exactly. */
static void sg_pack_run(real *restrict dst, long width, long count, long depth, const real *restrict src, long across,
                        long along, real scale)
{
    if (along == 1 && count == width) {  /* a transpose, in 8 x 8 blocks where the width allows */
        long p0 = 0;
        for (; p0 + 8 <= depth; p0 += 8) {
            long i = 0;
            for (; i + 8 <= width; i += 8)
                sg_transpose8(dst + p0 * width + i, width, src + i * across + p0, across, scale);
            for (; i < width; i++)
                for (long q = 0; q < 8; q++)
                    dst[(p0 + q) * width + i] = scale * src[i * across + p0 + q];
        }
        for (long i = 0; i < width; i++)
            for (long p = p0; p < depth; p++)
                dst[p * width + i] = scale * src[i * across + p];
        return;
    }
    if (across == 1 && count == width) {  /* runs of width values: plain copies, without the test per value below */
        for (long p = 0; p < depth; p++)
            for (long i = 0; i < width; i++)
                dst[p * width + i] = scale * src[p * along + i];
        return;
    }
    for (long p = 0; p < depth; p++)
        for (long i = 0; i < width; i++)
            dst[p * width + i] = i < count ? scale * src[i * across + p * along] : 0;
}

/* One panel of depth values along k from p0 on, where k is cut into segments
 * of k_seg that lie seg apart in memory. */
static void sg_pack(real *dst, long width, long count, long depth, const real *src, long across, long along, long p0,
                    long k_seg, long seg, real scale)
{
    for (long done = 0; done < depth;) {
        const long p = p0 + done, offset = p % k_seg;
        const long run = depth - done < k_seg - offset ? depth - done : k_seg - offset;
        sg_pack_run(dst + done * width, width, count, run, src + (p / k_seg) * seg + offset * along, across, along, scale);
        done += run;
    }
}

/* count products C = A @ B sharing B (A and C of item i at a + i*a_item and
 * c + i*c_item), where A[r, p] = a[r*a_rs + p*a_cs] and B[p, j] = b[p*b_rs + j*b_cs]
 * within a segment of k_seg values of p; segment s of A starts s*a_seg further
 * on, of B s*b_seg. A batch of products packs B once; a sum of products over
 * examples is one product with a long k. */
typedef struct {
    long count, m, n, k, k_seg;
    const real *a;
    long a_rs, a_cs, a_item, a_seg;
    const real *b;
    long b_rs, b_cs, b_seg;
    real *c;
    long ldc, c_item;
    int accumulate;  /* add to c instead of overwriting it */
    real scale;      /* of B, applied as it is packed: c (+)= A @ (scale B) */
} sg_product;

static void sg_product_serial(const sg_product *g)
{
    /* rows of A that run along k in memory, in one segment: read in place */
    const int in_place = g->a_cs == 1 && g->k_seg == g->k && g->a_rs > 0;
    for (long jc = 0; jc < g->n; jc += SG_NC) {
        const long nc = g->n - jc < SG_NC ? g->n - jc : SG_NC;
        for (long pc = 0; pc < g->k; pc += SG_KC) {
            const long kc = g->k - pc < SG_KC ? g->k - pc : SG_KC;
            for (long jr = 0; jr < nc; jr += SG_NR) {
                const long cols = nc - jr < SG_NR ? nc - jr : SG_NR;
                sg_pack(sg_packed_b + jr * kc, cols <= SG_VL ? SG_VL : SG_NR, cols, kc, g->b + (jc + jr) * g->b_cs, g->b_cs,
                        g->b_rs, pc, g->k_seg, g->b_seg, g->scale);
            }
            for (long item = 0; item < g->count; item++)
                for (long ic = 0; ic < g->m; ic += SG_MC) {
                    const long mc = g->m - ic < SG_MC ? g->m - ic : SG_MC;
                    for (long ir = 0; ir < mc; ir += SG_MR) {
                        const long rows = mc - ir < SG_MR ? mc - ir : SG_MR;
                        const real *a = g->a + item * g->a_item + (ic + ir) * g->a_rs;
                        if (!in_place || rows < SG_MR)  /* the rows past the edge of A must not be read */
                            sg_pack(sg_packed_a + ir * kc, SG_MR, rows, kc, a, g->a_rs, g->a_cs, pc, g->k_seg, g->a_seg, 1);
                    }
                    for (long jr = 0; jr < nc; jr += SG_NR)
                        for (long ir = 0; ir < mc; ir += SG_MR) {
                            const long rows = mc - ir < SG_MR ? mc - ir : SG_MR, cols = nc - jr < SG_NR ? nc - jr : SG_NR;
                            const long lda = in_place && rows == SG_MR ? g->a_rs : 0;
                            const real *ap = lda ? g->a + item * g->a_item + (ic + ir) * g->a_rs + pc : sg_packed_a + ir * kc;
                            real *tile = g->c + item * g->c_item + (ic + ir) * g->ldc + jc + jr;
                            sg_tile(kc, ap, lda, sg_packed_b + jr * kc, tile, g->ldc, rows, cols, g->accumulate || pc > 0);
                        }
                }
        }
    }
}

/* The product, with OpenMP split into one block of items, rows or columns per thread. */
static void sg_product_run(const sg_product *g)
{
    if (g->m < 1 || g->n < 1 || g->count < 1)
        return;
    if (g->k < 1) {  /* an empty sum */
        for (long item = 0; item < g->count && !g->accumulate; item++)
            for (long i = 0; i < g->m; i++)
                memset(g->c + item * g->c_item + i * g->ldc, 0, (size_t)g->n * sizeof *g->c);
        return;
    }
#ifdef SG_BLAS
    if (g->count == 1 && g->k_seg == g->k && (g->a_rs == 1 || g->a_cs == 1) && (g->b_rs == 1 || g->b_cs == 1) && g->m > 1 &&
        g->n > 1 && g->k > 1) {
        SG_CBLAS_GEMM(CblasRowMajor, g->a_cs == 1 ? CblasNoTrans : CblasTrans,
                    g->b_cs == 1 ? CblasNoTrans : CblasTrans, (int)g->m, (int)g->n, (int)g->k, g->scale, g->a,
                    (int)(g->a_cs == 1 ? g->a_rs : g->a_cs), g->b, (int)(g->b_cs == 1 ? g->b_rs : g->b_cs),
                    g->accumulate ? 1 : 0, g->c, (int)g->ldc);
        return;
    }
#endif
#ifdef _OPENMP
    if ((double)g->count * g->m * g->n * g->k >= 1 << 18 && !omp_in_parallel()) {
#pragma omp parallel
        {
            const long t = omp_get_thread_num(), threads = omp_get_num_threads();
            const int by_items = g->count >= threads, by_columns = !by_items && g->n >= g->m;
            const long tile = by_items ? 1 : by_columns ? SG_NR : SG_MR;
            const long extent = by_items ? g->count : by_columns ? g->n : g->m;
            const long tiles = (extent + tile - 1) / tile;
            const long lo = tiles * t / threads * tile, hi_tile = tiles * (t + 1) / threads * tile;
            const long hi = hi_tile < extent ? hi_tile : extent;
            sg_product part = *g;
            if (by_items) {
                part.count = hi - lo;
                part.a += lo * g->a_item;
                part.c += lo * g->c_item;
            } else if (by_columns) {
                part.n = hi - lo;
                part.b += lo * g->b_cs;
                part.c += lo;
            } else {
                part.m = hi - lo;
                part.a += lo * g->a_rs;
                part.c += lo * g->ldc;
            }
            if (lo < hi)
                sg_product_serial(&part);
        }
        return;
    }
#endif
    sg_product_serial(g);
}

/* c[m x n] (+)= A @ B (row stride ldc), A and B given by element strides, so
 * transposes and overlapping windows cost nothing. */
static void sg_gemm(long m, long n, long k, const real *a, long a_rs, long a_cs, const real *b, long b_rs, long b_cs,
                    real *c, long ldc, int accumulate)
{
    const sg_product g = {1, m, n, k, k, a, a_rs, a_cs, 0, 0, b, b_rs, b_cs, 0, c, ldc, 0, accumulate, 1};
    sg_product_run(&g);
}
#endif
#ifdef SG_USE_MATMUL

/* c[m x p] = A[m x k] @ B[k x p], c row-major; A[i, kk] = a[i*a_rs + kk*a_cs]
 * and B[kk, j] = b[kk*b_rs + j*b_cs], so x.T and y.T are read in place. */
static void sg_matmul(long m, long k, long p, const real *a, long a_rs, long a_cs, const real *b, long b_rs, long b_cs,
                      real *c)
{
    sg_gemm(m, p, k, a, a_rs, a_cs, b, b_rs, b_cs, c, p, 0);
}
#endif
#ifdef SG_USE_MATMUL_SUM

/* c[m x n] = sum over count items of A_i @ B_i, A_i[r, p] = a[i*m*k + r*a_rs + p*a_cs] and B_i
 * the [k x n] item i of b: one product whose sum runs over every item's k (a segment each). */
static void sg_matmul_sum(long count, long m, long k, long n, const real *a, long a_rs, long a_cs, const real *b, real *c)
{
    const sg_product g = {1, m, n, count * k, k, a, a_rs, a_cs, 0, m * k, b, n, 1, k * n, c, n, 0, 0, 1};
    sg_product_run(&g);
}
#endif
#ifdef SG_USE_MATMUL_BIAS

/* c[m x p] = A[m x k] @ B[k x p] + bias (added to every row), strided as in
 * sg_matmul: c starts as the bias rows and the product accumulates into them,
 * a pass over c fewer than adding the bias afterwards. */
static void sg_matmul_bias(long m, long k, long p, const real *a, long a_rs, long a_cs, const real *b, long b_rs, long b_cs,
                           const real *bias, real *c)
{
    SG_PARALLEL_FOR_LARGE(m * p)
    for (long i = 0; i < m; i++)
        memcpy(c + i * p, bias, (size_t)p * sizeof *c);
    sg_gemm(m, p, k, a, a_rs, a_cs, b, b_rs, b_cs, c, p, 1);
}
#endif
#ifdef SG_USE_MATMUL_ADD

/* c[m x p] += scale * A[m x k] @ B[k x p], strided as in sg_matmul: a
 * gradient added into its parameter as it is computed (scale = -lr). */
static void sg_matmul_add(long m, long k, long p, const real *a, long a_rs, long a_cs, const real *b, long b_rs, long b_cs,
                          real scale, real *c)
{
    const sg_product g = {1, m, p, k, k, a, a_rs, a_cs, 0, 0, b, b_rs, b_cs, 0, c, p, 0, 1, scale};
    sg_product_run(&g);
}
#endif
#ifdef SG_USE_EMBEDDING

/* out[r, :] = table[ids[r], :] */
static void sg_embedding(long rows, long width, const real *table, const int64_t *ids, real *out)
{
    SG_PARALLEL_FOR_LARGE(rows * width)
    for (long r = 0; r < rows; r++)
        memcpy(out + r * width, table + ids[r] * width, (size_t)width * sizeof *out);
}
#endif
#ifdef SG_USE_EMBEDDING_BACKWARD

/* d_table[ids[r], :] += scale * cot[r, :] for every r (rows repeat when ids
 * do), d_table zeroed first unless accumulate: the gradient, or (scale = -lr,
 * accumulating into the table itself) an SGD step that touches only the rows
 * the batch used. */
static void sg_embedding_backward(long rows, long table_rows, long width, const int64_t *ids, const real *cot, real scale,
                                  int accumulate, real *d_table)
{
    if (!accumulate)
        memset(d_table, 0, (size_t)(table_rows * width) * sizeof *d_table);
    for (long r = 0; r < rows; r++) {
        real *dst = d_table + ids[r] * width;
        const real *src = cot + r * width;
        for (long j = 0; j < width; j++)
            dst[j] += scale * src[j];
    }
}
#endif
#if defined(SG_USE_CONV1D) || defined(SG_USE_CONV1D_BACKWARD_KERNEL) || defined(SG_USE_CONV1D_BACKWARD_INPUT) || \
    defined(SG_USE_CONV2D_BACKWARD_KERNEL) || defined(SG_USE_CONV2D_BACKWARD_INPUT)

/* The steps t in [*first, *last) whose input row t*stride + w - padding lies in [0, length). */
static void sg_valid_steps(long steps, long length, long w, long stride, long padding, long *first, long *last)
{
    long lo = padding - w > 0 ? (padding - w + stride - 1) / stride : 0;
    long hi = length - 1 + padding - w >= 0 ? (length - 1 + padding - w) / stride + 1 : 0;
    *first = lo;
    *last = hi < steps ? hi : steps;
}
#endif
#if defined(SG_USE_CONV1D) || defined(SG_USE_CONV1D_BACKWARD_KERNEL)

/* The steps t in [*first, *last) whose whole window of width rows lies inside x. */
static void sg_inner_steps(long steps, long length, long width, long stride, long padding, long *first, long *last)
{
    long first_tap0, last_tap0, first_tap1, last_tap1;
    sg_valid_steps(steps, length, 0, stride, padding, &first_tap0, &last_tap0);
    sg_valid_steps(steps, length, width - 1, stride, padding, &first_tap1, &last_tap1);
    *first = first_tap0 > first_tap1 ? first_tap0 : first_tap1;
    *last = last_tap0 < last_tap1 ? last_tap0 : last_tap1;
    if (*last < *first)
        *last = *first;
}
#endif
#ifdef SG_USE_CONV1D

/* y[b, t, o] = sum_{w, c} x[b, t*stride + w - padding, c] K[w, c, o]; rows
 * outside x are the zero padding. A window of whole rows is contiguous in x,
 * so for the steps whose window lies inside x the convolution of every
 * example is one product of overlapping rows of x (row stride stride*c_in,
 * length width*c_in) with K seen as [width*c_in, c_out], K packed once for
 * the batch; the few steps at the edges add tap by tap. */
static void sg_conv1d(long batch, long length, long c_in, long steps, long c_out, long width, long stride, long padding,
                      const real *x, const real *kernel, real *y)
{
    long inner_first, inner_last;
    sg_inner_steps(steps, length, width, stride, padding, &inner_first, &inner_last);
    const sg_product inner = {batch, inner_last - inner_first, c_out, width * c_in, width * c_in,
                              x + (inner_first * stride - padding) * c_in, stride * c_in, 1, length * c_in, 0,
                              kernel, c_out, 1, 0, y + inner_first * c_out, c_out, steps * c_out, 0, 1};
    sg_product_run(&inner);
    for (long b = 0; b < batch; b++)
        for (long t = 0; t < steps; t++) {
            if (t >= inner_first && t < inner_last)
                continue;
            real *row_out = y + (b * steps + t) * c_out;
            memset(row_out, 0, (size_t)c_out * sizeof *row_out);
            for (long w = 0; w < width; w++) {
                const long row = t * stride + w - padding;
                if (row >= 0 && row < length)
                    sg_gemm(1, c_out, c_in, x + (b * length + row) * c_in, 0, 1, kernel + w * c_in * c_out, c_out, 1,
                            row_out, c_out, 1);
            }
        }
}
#endif
#ifdef SG_USE_CONV1D_BACKWARD_INPUT

/* dx[b, t*stride + w - padding, c] += sum_o dy[b, t, o] K[w, c, o]: for each
 * tap, every example's valid rows of dy times K[w].T, added into every
 * stride-th row of dx (K[w] packed once for the batch). */
static void sg_conv1d_backward_input(long batch, long length, long c_in, long steps, long c_out, long width, long stride,
                                     long padding, const real *dy, const real *kernel, real *dx)
{
    memset(dx, 0, (size_t)(batch * length * c_in) * sizeof *dx);
    for (long w = 0; w < width; w++) {
        long first, last;
        sg_valid_steps(steps, length, w, stride, padding, &first, &last);
        const sg_product tap = {batch, last - first, c_in, c_out, c_out, dy + first * c_out, c_out, 1, steps * c_out, 0,
                                kernel + w * c_in * c_out, 1, c_out, 0,
                                dx + (first * stride + w - padding) * c_in, stride * c_in, length * c_in, 1, 1};
        sg_product_run(&tap);
    }
}
#endif
#ifdef SG_USE_CONV1D_BACKWARD_KERNEL

/* dK[w, c, o] = sum_{b, t} x[b, t*stride + w - padding, c] dy[b, t, o]: the
 * transpose of the forward pass's overlapping windows times dy, summed over
 * the steps of every example as one product, then the edge steps tap by tap. */
static void sg_conv1d_backward_kernel(long batch, long length, long c_in, long steps, long c_out, long width, long stride,
                                      long padding, const real *x, const real *dy, real *dk)
{
    long inner_first, inner_last;
    sg_inner_steps(steps, length, width, stride, padding, &inner_first, &inner_last);
    const long rows = inner_last - inner_first;
    const sg_product inner = {1, width * c_in, c_out, batch * rows, rows > 0 ? rows : 1,
                              x + (inner_first * stride - padding) * c_in, 1, stride * c_in, 0, length * c_in,
                              dy + inner_first * c_out, c_out, 1, steps * c_out, dk, c_out, 0, 0, 1};
    sg_product_run(&inner);
    for (long b = 0; b < batch; b++)
        for (long t = 0; t < steps; t++) {
            if (t >= inner_first && t < inner_last)
                continue;
            for (long w = 0; w < width; w++) {
                const long row = t * stride + w - padding;
                if (row >= 0 && row < length)
                    sg_gemm(c_in, c_out, 1, x + (b * length + row) * c_in, 1, 0, dy + (b * steps + t) * c_out, 0, 1,
                            dk + w * c_in * c_out, c_out, 1);
            }
        }
}
#endif
#ifdef SG_USE_MAX_POOL1D

/* y[b, t, c] = max_k x[b, t*stride + k, c]; a NaN in the window is the maximum, as in NumPy. */
static void sg_max_pool1d(long batch, long length, long channels, long steps, long size, long stride, const real *x, real *y)
{
    SG_PARALLEL_FOR_LARGE(batch * length * channels)
    for (long b = 0; b < batch; b++)
        for (long t = 0; t < steps; t++) {
            real *y_row = y + (b * steps + t) * channels;
            const real *window = x + (b * length + t * stride) * channels;
            memcpy(y_row, window, (size_t)channels * sizeof *y_row);
            for (long k = 1; k < size; k++)
                for (long c = 0; c < channels; c++)
                    y_row[c] = window[k * channels + c] > y_row[c] || window[k * channels + c] != window[k * channels + c]
                                   ? window[k * channels + c] : y_row[c];
        }
}
#endif
#ifdef SG_USE_AVG_POOL1D

/* y[b, t, c] = mean_k x[b, t*stride + k, c] */
static void sg_avg_pool1d(long batch, long length, long channels, long steps, long size, long stride, const real *x, real *y)
{
    SG_PARALLEL_FOR_LARGE(batch * length * channels)
    for (long b = 0; b < batch; b++)
        for (long t = 0; t < steps; t++) {
            real *y_row = y + (b * steps + t) * channels;
            const real *window = x + (b * length + t * stride) * channels;
            memcpy(y_row, window, (size_t)channels * sizeof *y_row);
            for (long k = 1; k < size; k++)
                for (long c = 0; c < channels; c++)
                    y_row[c] += window[k * channels + c];
            for (long c = 0; c < channels; c++)
                y_row[c] /= (real)size;
        }
}
#endif
#ifdef SG_USE_MAX_POOL1D_BACKWARD

/* dy[b, t, c] goes to the first maximum of its window (its first NaN, as NumPy's argmax picks it). */
static void sg_max_pool1d_backward(long batch, long length, long channels, long steps, long size, long stride,
                                   const real *x, const real *dy, real *dx)
{
    memset(dx, 0, (size_t)(batch * length * channels) * sizeof *dx);
    SG_PARALLEL_FOR_LARGE(batch * length * channels)
    for (long b = 0; b < batch; b++)
        for (long t = 0; t < steps; t++) {
            const long first = b * length + t * stride;
            for (long c = 0; c < channels; c++) {
                long best = 0;
                for (long k = 1; k < size; k++) {
                    const real candidate = x[(first + k) * channels + c], top = x[(first + best) * channels + c];
                    if (candidate > top || (candidate != candidate && top == top))
                        best = k;
                }
                dx[(first + best) * channels + c] += dy[(b * steps + t) * channels + c];
            }
        }
}
#endif
#ifdef SG_USE_AVG_POOL1D_BACKWARD

/* dy[b, t, c] / size spread over its window. */
static void sg_avg_pool1d_backward(long batch, long length, long channels, long steps, long size, long stride,
                                   const real *dy, real *dx)
{
    memset(dx, 0, (size_t)(batch * length * channels) * sizeof *dx);
    SG_PARALLEL_FOR_LARGE(batch * length * channels)
    for (long b = 0; b < batch; b++)
        for (long t = 0; t < steps; t++) {
            const real *dy_row = dy + (b * steps + t) * channels;
            for (long k = 0; k < size; k++) {
                real *dx_row = dx + (b * length + t * stride + k) * channels;
                for (long c = 0; c < channels; c++)
                    dx_row[c] += dy_row[c] / (real)size;
            }
        }
}
#endif
#ifdef SG_USE_CONV2D

/* The kernel taps [*tap0, *tap1) that output o of an image axis meets: those
 * whose input index o*stride + tap - padding lies in [0, length). */
static void sg_taps_inside(long o, long length, long taps, long stride, long padding, long *tap0, long *tap1)
{
    const long first = padding - o * stride, last = length + padding - o * stride;
    *tap0 = first > 0 ? first : 0;
    *tap1 = last < taps ? last : taps;
}

/* The run of outputs [o, *end) that meet the same taps as o. An axis falls into
 * a few runs: the edges, where the padding cuts windows short, and the inside. */
static long sg_tap_run_end(long o, long outputs, long length, long taps, long stride, long padding)
{
    long tap0, tap1, next0, next1, end = o + 1;
    sg_taps_inside(o, length, taps, stride, padding, &tap0, &tap1);
    for (; end < outputs; end++) {
        sg_taps_inside(end, length, taps, stride, padding, &next0, &next1);
        if (next0 != tap0 || next1 != tap1)
            break;
    }
    return end;
}

/* y[b, i, j, o] = sum_{u, v, c} x[b, i*stride + u - padding, j*stride + v - padding, c] K[u, v, c, o];
 * pixels outside x are the zero padding, so each output meets only the taps
 * inside x. A window's rows of kw*c_in values are contiguous in x and one image
 * row apart: for one output row and a run of columns that meet the same taps,
 * the convolution of every image is one product of those windows (a segment
 * of the product's sum per kernel row) with the taps' part of K, packed once
 * for the batch. */
static void sg_conv2d(long batch, long height, long width, long c_in, long out_h, long out_w, long c_out, long kh, long kw,
                      long stride, long padding, const real *x, const real *kernel, real *y)
{
    const long row = width * c_in;
    for (long i = 0; i < out_h; i++) {
        long u0, u1;
        sg_taps_inside(i, height, kh, stride, padding, &u0, &u1);
        for (long j = 0, j_end; j < out_w; j = j_end) {
            long v0, v1;
            sg_taps_inside(j, width, kw, stride, padding, &v0, &v1);
            j_end = sg_tap_run_end(j, out_w, width, kw, stride, padding);
            const long taps = u0 < u1 && v0 < v1 ? (v1 - v0) * c_in : 0, columns = j_end - j;
            /* the product's rows are the run's columns, one product per image, or where the run is
             * shorter than the batch (small images), the images, one product per column */
            const long image = height * row, column = stride * c_in;
            const int by_image = columns >= batch;
            const sg_product run = {by_image ? batch : columns, by_image ? columns : batch, c_out, taps * (u1 - u0),
                                    taps ? taps : 1, x + ((i * stride + u0 - padding) * width + j * stride + v0 - padding) * c_in,
                                    by_image ? column : image, 1, by_image ? image : column, row,
                                    kernel + (u0 * kw + v0) * c_in * c_out, c_out, 1, kw * c_in * c_out, y + (i * out_w + j) * c_out,
                                    by_image ? c_out : out_h * out_w * c_out, by_image ? out_h * out_w * c_out : c_out, 0, 1};
            sg_product_run(&run);  /* no taps: an empty sum, which writes zeros */
        }
    }
}
#endif
#ifdef SG_USE_CONV2D_BACKWARD_INPUT

/* dx[b, i*stride + u - padding, j*stride + v - padding, c] += sum_o dy[b, i, j, o] K[u, v, c, o]:
 * for each tap and output row whose input row lies inside x, every image's run
 * of outputs whose input pixel lies inside x times K[u, v].T, added into every
 * stride-th pixel of that row of dx (K[u, v] packed once for the batch). */
static void sg_conv2d_backward_input(long batch, long height, long width, long c_in, long out_h, long out_w, long c_out,
                                     long kh, long kw, long stride, long padding, const real *dy, const real *kernel, real *dx)
{
    const long row = width * c_in;
    memset(dx, 0, (size_t)(batch * height * row) * sizeof *dx);
    for (long u = 0; u < kh; u++)
        for (long v = 0; v < kw; v++) {
            long i_first, i_last, j_first, j_last;
            sg_valid_steps(out_h, height, u, stride, padding, &i_first, &i_last);
            sg_valid_steps(out_w, width, v, stride, padding, &j_first, &j_last);
            const long columns = j_last - j_first, out_image = out_h * out_w * c_out, image = height * row;
            const int by_image = columns >= batch;  /* as in sg_conv2d: the longer of the two are the rows */
            for (long i = i_first; i < i_last && j_first < j_last; i++) {
                const sg_product tap = {by_image ? batch : columns, by_image ? columns : batch, c_in, c_out, c_out,
                                        dy + (i * out_w + j_first) * c_out, by_image ? c_out : out_image, 1,
                                        by_image ? out_image : c_out, 0, kernel + (u * kw + v) * c_in * c_out, 1, c_out, 0,
                                        dx + (i * stride + u - padding) * row + (j_first * stride + v - padding) * c_in,
                                        by_image ? stride * c_in : image, by_image ? image : stride * c_in, 1, 1};
                sg_product_run(&tap);
            }
        }
}
#endif
#ifdef SG_USE_CONV2D_BACKWARD_KERNEL

/* dK[u, v, c, o] = sum_{b, i, j} x[b, i*stride + u - padding, j*stride + v - padding, c] dy[b, i, j, o]:
 * for each tap, the input pixels it meets (read across, as x.T) times dy,
 * one product per image summed into dK[u, v]. */
static void sg_conv2d_backward_kernel(long batch, long height, long width, long c_in, long out_h, long out_w, long c_out,
                                      long kh, long kw, long stride, long padding, const real *x, const real *dy, real *dk)
{
    const long row = width * c_in;
    for (long u = 0; u < kh; u++)
        for (long v = 0; v < kw; v++) {
            long i_first, i_last, j_first, j_last;
            sg_valid_steps(out_h, height, u, stride, padding, &i_first, &i_last);
            sg_valid_steps(out_w, width, v, stride, padding, &j_first, &j_last);
            real *tap = dk + (u * kw + v) * c_in * c_out;
            const long rows = i_last - i_first, cols = j_last - j_first;
            if (rows <= 0 || cols <= 0) {
                memset(tap, 0, (size_t)(c_in * c_out) * sizeof *tap);
                continue;
            }
            /* the sum over the pixels as segments of one product: per image (a segment per row),
             * or where there are fewer rows than images, per row (a segment per image) */
            const int by_image = rows >= batch;
            const long parts = by_image ? batch : rows;
            for (long part = 0; part < parts; part++) {
                const long b = by_image ? part : 0, i = by_image ? i_first : i_first + part;
                const sg_product pixels = {1, c_in, c_out, (by_image ? rows : batch) * cols, cols,
                                           x + (b * height + i * stride + u - padding) * row + (j_first * stride + v - padding) * c_in,
                                           1, stride * c_in, 0, by_image ? stride * row : height * row,
                                           dy + ((b * out_h + i) * out_w + j_first) * c_out, c_out, 1,
                                           by_image ? out_w * c_out : out_h * out_w * c_out, tap, c_out, 0, part > 0, 1};
                sg_product_run(&pixels);
            }
            if (parts < 1)
                memset(tap, 0, (size_t)(c_in * c_out) * sizeof *tap);
        }
}
#endif
#if defined(SG_USE_MAX_POOL2D) || defined(SG_USE_AVG_POOL2D)

/* y[b, i, j, c] = the maximum (max) or the mean of x[b, i*stride + u, j*stride + v, c]
 * over the size x size window; a NaN in the window is the maximum, as in NumPy. */
static void sg_pool2d(int max, long batch, long height, long width, long channels, long out_h, long out_w, long size, long stride,
                      const real *x, real *y)
{
    SG_PARALLEL_FOR_LARGE(batch * height * width * channels)
    for (long b = 0; b < batch; b++)
        for (long i = 0; i < out_h; i++)
            for (long j = 0; j < out_w; j++) {
                real *out = y + ((b * out_h + i) * out_w + j) * channels;
                const real *corner = x + ((b * height + i * stride) * width + j * stride) * channels;
                memcpy(out, corner, (size_t)channels * sizeof *out);
                for (long tap = 1; tap < size * size; tap++) {
                    const real *in = corner + (tap / size * width + tap % size) * channels;
                    for (long c = 0; c < channels; c++)
                        out[c] = !max ? out[c] + in[c] : in[c] > out[c] || in[c] != in[c] ? in[c] : out[c];
                }
                for (long c = 0; c < channels && !max; c++)
                    out[c] /= (real)(size * size);
            }
}
#endif
#ifdef SG_USE_MAX_POOL2D

static void sg_max_pool2d(long batch, long height, long width, long channels, long out_h, long out_w, long size, long stride,
                          const real *x, real *y)
{
    sg_pool2d(1, batch, height, width, channels, out_h, out_w, size, stride, x, y);
}
#endif
#ifdef SG_USE_AVG_POOL2D

static void sg_avg_pool2d(long batch, long height, long width, long channels, long out_h, long out_w, long size, long stride,
                          const real *x, real *y)
{
    sg_pool2d(0, batch, height, width, channels, out_h, out_w, size, stride, x, y);
}
#endif
#ifdef SG_USE_MAX_POOL2D_BACKWARD

/* dy[b, i, j, c] goes to the first maximum of its window in row-major order (its first NaN, as NumPy's argmax picks it). */
static void sg_max_pool2d_backward(long batch, long height, long width, long channels, long out_h, long out_w, long size,
                                   long stride, const real *x, const real *dy, real *dx)
{
    memset(dx, 0, (size_t)(batch * height * width * channels) * sizeof *dx);
    SG_PARALLEL_FOR_LARGE(batch * height * width * channels)
    for (long b = 0; b < batch; b++)
        for (long i = 0; i < out_h; i++)
            for (long j = 0; j < out_w; j++) {
                const long corner = ((b * height + i * stride) * width + j * stride) * channels;
                const real *out_grad = dy + ((b * out_h + i) * out_w + j) * channels;
                for (long c = 0; c < channels; c++) {
                    long best = corner + c;
                    for (long tap = 1; tap < size * size; tap++) {
                        const long at = corner + (tap / size * width + tap % size) * channels + c;
                        if (x[at] > x[best] || (x[at] != x[at] && x[best] == x[best]))
                            best = at;
                    }
                    dx[best] += out_grad[c];
                }
            }
}
#endif
#ifdef SG_USE_AVG_POOL2D_BACKWARD

/* dy[b, i, j, c] / size**2 spread over its window. */
static void sg_avg_pool2d_backward(long batch, long height, long width, long channels, long out_h, long out_w, long size,
                                   long stride, const real *dy, real *dx)
{
    memset(dx, 0, (size_t)(batch * height * width * channels) * sizeof *dx);
    SG_PARALLEL_FOR_LARGE(batch * height * width * channels)
    for (long b = 0; b < batch; b++)
        for (long i = 0; i < out_h; i++)
            for (long j = 0; j < out_w; j++) {
                const real *out_grad = dy + ((b * out_h + i) * out_w + j) * channels;
                real *corner = dx + ((b * height + i * stride) * width + j * stride) * channels;
                for (long tap = 0; tap < size * size; tap++) {
                    real *in = corner + (tap / size * width + tap % size) * channels;
                    for (long c = 0; c < channels; c++)
                        in[c] += out_grad[c] / (real)(size * size);
                }
            }
}
#endif
#ifdef SG_USE_UPSAMPLE2D

/* y[b, i, j, c] = x[b, i / factor, j / factor, c]: each output row is its input
 * row with every pixel repeated factor times, and is itself written factor times. */
static void sg_upsample2d(long batch, long height, long width, long channels, long factor, const real *x, real *y)
{
    const long row = width * factor * channels;
    SG_PARALLEL_FOR_LARGE(batch * height * factor * row)
    for (long b = 0; b < batch; b++)
        for (long i = 0; i < height; i++) {
            const real *in = x + (b * height + i) * width * channels;
            real *out = y + (b * height + i) * factor * row;
            for (long j = 0; j < width * factor; j++)
                memcpy(out + j * channels, in + j / factor * channels, (size_t)channels * sizeof *y);
            for (long copy = 1; copy < factor; copy++)
                memcpy(out + copy * row, out, (size_t)row * sizeof *y);
        }
}
#endif
#if defined(SG_USE_LAYER_NORM) || defined(SG_USE_LAYER_NORM_BACKWARD)

/* The mean and 1/sqrt(var + eps) of length values inner apart: the biased
 * variance from the deviations (two passes), so a constant row gives 0, exactly. */
static void sg_moments(long length, long inner, const real *x, double eps, double *mean, double *rstd)
{
    double total = 0, squares = 0;
    for (long l = 0; l < length; l++)
        total += x[l * inner];
    *mean = total / (double)length;
    for (long l = 0; l < length; l++)
        squares += (x[l * inner] - *mean) * (x[l * inner] - *mean);
    *rstd = 1 / sqrt(squares / (double)length + eps);
}
#endif
#ifdef SG_USE_LAYER_NORM

/* y = (x - mean x) / sqrt(var x + eps) along the middle axis of [outer, length, inner]. */
static void sg_layer_norm(long outer, long length, long inner, double eps, const real *x, real *y)
{
    SG_PARALLEL_FOR_LARGE(outer * length * inner)
    for (long o = 0; o < outer; o++)
        for (long j = 0; j < inner; j++) {
            const long first = o * length * inner + j;
            double mean, rstd;
            sg_moments(length, inner, x + first, eps, &mean, &rstd);
            for (long l = 0; l < length; l++)
                y[first + l * inner] = (real)((x[first + l * inner] - mean) * rstd);
        }
}
#endif
#ifdef SG_USE_LAYER_NORM_BACKWARD

/* dx = (dy - mean dy - y mean(dy y)) / sqrt(var x + eps) along the middle axis of
 * [outer, length, inner], with y = (x - mean x) / sqrt(var x + eps) recomputed from x. */
static void sg_layer_norm_backward(long outer, long length, long inner, double eps, const real *x, const real *dy, real *dx)
{
    SG_PARALLEL_FOR_LARGE(outer * length * inner)
    for (long o = 0; o < outer; o++)
        for (long j = 0; j < inner; j++) {
            const long first = o * length * inner + j;
            double mean, rstd, mean_dy = 0, mean_dy_y = 0;
            sg_moments(length, inner, x + first, eps, &mean, &rstd);
            for (long l = 0; l < length; l++) {
                mean_dy += dy[first + l * inner];
                mean_dy_y += dy[first + l * inner] * (x[first + l * inner] - mean) * rstd;
            }
            mean_dy /= (double)length;
            mean_dy_y /= (double)length;
            for (long l = 0; l < length; l++)
                dx[first + l * inner] = (real)(rstd * (dy[first + l * inner] - mean_dy - (x[first + l * inner] - mean) * rstd * mean_dy_y));
        }
}
#endif
#ifdef SG_USE_MAX_BACKWARD

/* x and dx are [outer, length, inner]; dy (as wide as x) goes to the first
 * maximum along the middle axis, as NumPy's argmax picks it. Two passes that
 * vectorise, over up to block columns at once so that x is read row by row:
 * each column's maximum, then dx written whole, with dy where the column first
 * meets it (a NaN is the maximum, and the first NaN takes dy, as NumPy's argmax
 * picks it). */
static void sg_max_backward(long outer, long length, long inner, const real *x, const real *dy, real *dx)
{
    enum { block = 256 };
    SG_PARALLEL_FOR_LARGE(outer * length * inner)
    for (long o = 0; o < outer; o++)
        for (long j0 = 0; j0 < inner; j0 += block) {
            const long width = inner - j0 < block ? inner - j0 : block, first = o * length * inner + j0;
            const real *xo = x + first, *dyo = dy + first;
            real *dxo = dx + first;
            real top[block];
            int found[block];
            for (long j = 0; j < width; j++) {
                top[j] = xo[j];
                found[j] = 0;
            }
            for (long l = 1; l < length; l++)
                for (long j = 0; j < width; j++)
                    top[j] = xo[l * inner + j] > top[j] || xo[l * inner + j] != xo[l * inner + j] ? xo[l * inner + j] : top[j];
            for (long l = 0; l < length; l++)
                for (long j = 0; j < width; j++) {
                    const real value = xo[l * inner + j];
                    const int hit = !found[j] && (value == top[j] || (value != value && top[j] != top[j]));
                    dxo[l * inner + j] = hit ? dyo[l * inner + j] : 0;
                    found[j] |= hit;
                }
        }
}
#endif
#ifdef SG_USE_EXP_NONPOSITIVE

/* e^x for x <= 0, vectorisable (libm's exp is a call per element): x = k ln 2 + r
 * with |r| <= ln 2 / 2 (k rounded by adding and subtracting 1.5 * 2^23 in float32, 2^52 in float64),
 * e^r by its Taylor polynomial to r^7 (float32) or r^13, 2^k built in the exponent
 * bits. The relative error is within 1e-7 (float32) or 3e-16; below the smallest normal number it returns 0. */
static real sg_exp_nonpositive(real x)
{
#ifdef SG_FLOAT32
    const real clamped = x < -87.0F ? -87.0F : x;
    const real k = (clamped * 1.44269504088896341F + 12582912.0F) - 12582912.0F;
    const real r = (clamped - k * 0.693359375F) + k * 2.12194440e-4F;
    real p = 1.0F / 5040;
    p = p * r + 1.0F / 720;
    p = p * r + 1.0F / 120;
    p = p * r + 1.0F / 24;
    p = p * r + 1.0F / 6;
    p = p * r + 0.5F;
    p = p * r + 1.0F;
    p = p * r + 1.0F;
    const uint32_t bits = (uint32_t)((int32_t)k + 127) << 23;
#else
    const real clamped = x < -708.0 ? -708.0 : x;
    const real k = (clamped * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;
    const real r = (clamped - k * 0.6931471803691238) - k * 1.9082149292705877e-10;
    const real inverse_factorial[14] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                        1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0,
                                        1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
    real p = inverse_factorial[0];
    for (int i = 1; i < 14; i++)
        p = p * r + inverse_factorial[i];
    const uint64_t bits = (uint64_t)((int64_t)k + 1023) << 52;
#endif
    real scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < clamped ? 0 : p * scale;
}
#endif
#ifdef SG_USE_EXP_SHIFTED

/* The largest of x[0], x[stride], ..., in 16 interleaved lanes that vectorise. */
static real sg_max_of(long count, long stride, const real *x)
{
    real lane[16], top = x[0];
    long l = 0;
    if (count >= 16) {
        for (int j = 0; j < 16; j++)
            lane[j] = x[j * stride];
        for (l = 16; l + 16 <= count; l += 16)
            for (int j = 0; j < 16; j++)
                lane[j] = x[(l + j) * stride] > lane[j] ? x[(l + j) * stride] : lane[j];
        for (int j = 0; j < 16; j++)
            top = lane[j] > top ? lane[j] : top;
    }
    for (; l < count; l++)
        top = x[l * stride] > top ? x[l * stride] : top;
    return top;
}

/* y[l*stride] = exp(x[l*stride] - shift) (y may be NULL); returns their sum, in 16 interleaved partial sums. */
static real sg_exp_shifted(long count, long stride, const real *x, real shift, real *y)
{
    real lane[16] = {0}, total = 0;
    long l = 0;
    for (; l + 16 <= count; l += 16)
        for (int j = 0; j < 16; j++) {
            const real e = sg_exp_nonpositive(x[(l + j) * stride] - shift);
            if (y)
                y[(l + j) * stride] = e;
            lane[j] += e;
        }
    for (; l < count; l++) {
        const real e = sg_exp_nonpositive(x[l * stride] - shift);
        if (y)
            y[l * stride] = e;
        total += e;
    }
    for (int j = 0; j < 16; j++)
        total += lane[j];
    return total;
}
#endif
#if defined(SG_USE_TANH) && defined(SG_FLOAT32)  /* float64 models call libm's tanh */

/* tanh in float32 that vectorises (libm's is a call per element), both
 * branches computed and one picked: x (1 + c3 x^2 + c5 x^4 + ... + c15 x^14),
 * tanh's Taylor series, for |x| < 0.55; beyond, (1 - e)/(1 + e) with e = e^{-2|x|}.
 * Within 3e-7 of tanh, relative. */
static real sg_tanh(real x)
{
    const real a = fabsf(x), x2 = x * x;
    real p = -0.0014558343870513183F;
    p = p * x2 + 0.003592128036572481F;
    p = p * x2 - 0.008863235529902197F;
    p = p * x2 + 0.021869488536155203F;
    p = p * x2 - 0.05396825396825397F;
    p = p * x2 + 0.13333333333333333F;
    p = p * x2 - 0.3333333333333333F;
    const real e = sg_exp_nonpositive(-2 * a), large = (1 - e) / (1 + e);
    return a < 0.55F ? x * (1 + x2 * p) : x < 0 ? -large : large;  /* x * (...) keeps the sign of -0.0 */
}
#endif
#ifdef SG_USE_SOFTMAX

/* y = exp(x - max x) / sum exp(x - max x) along the middle axis of [outer, length, inner]. */
static void sg_softmax(long outer, long length, long inner, const real *x, real *y)
{
    for (long o = 0; o < outer; o++)
        for (long j = 0; j < inner; j++) {
            const long first = o * length * inner + j;
            const real total = sg_exp_shifted(length, inner, x + first, sg_max_of(length, inner, x + first), y + first);
            for (long l = 0; l < length; l++)
                y[first + l * inner] /= total;
        }
}
#endif
#ifdef SG_USE_LOG_SOFTMAX

/* y = x - max x - log sum exp(x - max x) along the middle axis of [outer, length, inner]. */
static void sg_log_softmax(long outer, long length, long inner, const real *x, real *y)
{
    for (long o = 0; o < outer; o++)
        for (long j = 0; j < inner; j++) {
            const long first = o * length * inner + j;
            const real top = sg_max_of(length, inner, x + first);
            const real log_total = SG_LIBM(log)(sg_exp_shifted(length, inner, x + first, top, NULL));
            for (long l = 0; l < length; l++)
                y[first + l * inner] = x[first + l * inner] - top - log_total;
        }
}
#endif
#ifdef SG_USE_SOFTMAX_CROSS_ENTROPY_GRAD

/* out[r, :] = (softmax(z[r, :]) - onehot(y[r])) * scale: cross-entropy's
 * gradient row by row, without a one-hot array. Returns the
 * loss too, the mean over rows of log sum exp(z[r, :]) - z[r, y[r]]: the
 * rows' terms are summed in row order, whatever the number of threads. */
static double sg_softmax_cross_entropy_grad(long rows, long classes, const real *z, const int64_t *y, real scale, real *out)
{
    enum { block = 256 };
    double total = 0;
    for (long first = 0; first < rows; first += block) {
        const long count = rows - first < block ? rows - first : block;
        double loss[block];
        SG_PARALLEL_FOR_LARGE(count * classes)
        for (long i = 0; i < count; i++) {
            const long r = first + i;
            const real *row = z + r * classes;
            real *o = out + r * classes;
            const real top = sg_max_of(classes, 1, row);
            const real sum = sg_exp_shifted(classes, 1, row, top, o);
            const real factor = scale / sum;
            for (long k = 0; k < classes; k++)
                o[k] *= factor;
            o[y[r]] -= scale;
            loss[i] = SG_LIBM(log)(sum) - (row[y[r]] - top);
        }
        for (long i = 0; i < count; i++)
            total += loss[i];
    }
    return total / (double)rows;
}
#endif
#ifdef SG_USE_ONEHOT

/* out[r, k] = (labels[r] == k) */
static void sg_onehot(long rows, long classes, const int64_t *labels, real *out)
{
    memset(out, 0, (size_t)(rows * classes) * sizeof *out);
    for (long r = 0; r < rows; r++)
        out[r * classes + labels[r]] = 1;
}
#endif
#ifdef SG_USE_CROSS_ENTROPY

/* mean over rows of log sum exp(z) - z[label], with the row maximum taken out first. */
static double sg_cross_entropy(long rows, long classes, const real *logits, const int64_t *labels)
{
    double total = 0;
    for (long r = 0; r < rows; r++) {
        const real *z = logits + r * classes;
        const real top = sg_max_of(classes, 1, z);
        total += SG_LIBM(log)(sg_exp_shifted(classes, 1, z, top, NULL)) - (z[labels[r]] - top);
    }
    return total / (double)rows;
}
#endif
#ifdef SG_USE_COUNT_TOP

/* How many rows rank their label among their k best scores (ties count for the label). */
static long sg_count_top(long rows, long classes, const real *scores, const int64_t *labels, long k)
{
    long hits = 0;
    for (long r = 0; r < rows; r++) {
        const real *z = scores + r * classes;
        long above = 0;
        for (long c = 0; c < classes; c++)
            above += z[c] > z[labels[r]];
        hits += above < k;
    }
    return hits;
}
#endif
#ifdef SG_USE_CONFUSION

/* Each class's true positives, false positives and false negatives (counts[c],
 * counts[classes + c], counts[2 * classes + c]), predicting each row's first maximum. */
static void sg_confusion(long rows, long classes, const real *scores, const int64_t *labels, double *counts)
{
    for (long c = 0; c < 3 * classes; c++)
        counts[c] = 0;
    for (long r = 0; r < rows; r++) {
        const real *z = scores + r * classes;
        long best = 0;
        for (long c = 1; c < classes; c++)
            if (z[c] > z[best])
                best = c;
        if (best == labels[r]) {
            counts[best] += 1;
        } else {
            counts[classes + best] += 1;
            counts[2 * classes + labels[r]] += 1;
        }
    }
}
#endif
#ifdef SG_USE_COUNT_CORRECT

/* How many rows have their first maximum at the label. */
static long sg_count_correct(long rows, long classes, const real *scores, const int64_t *labels)
{
    long correct = 0;
    for (long r = 0; r < rows; r++) {
        const real *z = scores + r * classes;
        long best = 0;
        for (long k = 1; k < classes; k++)
            if (z[k] > z[best])
                best = k;
        correct += best == labels[r];
    }
    return correct;
}
#endif

#endif  /* SG_KERNELS_H */
