/* The trainer of symgraph's C runtime: data loading, shuffling, input
 * normalisation, the optimisers and schedules, checkpoints, evaluation,
 * prediction, the gradient check, the command line and the training loop,
 * for any model with a generated C interface (model.h), in one process or
 * data-parallel over MPI (-DSG_MPI).
 *
 * It is ordinary C, compiled with the trainer (train.c) that includes it:
 * everything that depends on the model is defined there first.
 *   _XOPEN_SOURCE 700       before any header
 *   SG_MODEL(name)          the model's interface: SG_MODEL(forward) is mlp_forward
 *   SG_CHECK(name)          the float64 model the gradient check runs (the model, or its float64 twin)
 *   real, SQRT              the model's float type and its square root
 *   SG_BATCH, SG_MAX_RANK, SG_METRIC_SUMS   the model's NAME_BATCH, NAME_MAX_RANK, NAME_METRIC_SUMS
 *   SG_NAME, SG_DTYPE       the spec's name and the model's precision, as strings
 *   OPTIMIZER, LEARNING_RATE, MOMENTUM, NESTEROV, WEIGHT_DECAY, BETA1, BETA2, EPSILON, EPOCHS,
 *   BATCH_SIZE, SEED, SCHEDULE, WARMUP, DECAY, STEP_EPOCHS, CLIP_NORM, PATIENCE
 *                           the spec's training settings: the flags' defaults
 *   SHUFFLE_STREAM, GRADCHECK_STREAM   streams of the model's random generator
 *   SCORED                  elements per example that a metric averages over
 *   METRICS, METRIC_LIST    the metrics, as metric initialisers {name, shown, sums, classes}
 *   HIGHER_IS_BETTER        whether the first metric (else the loss) improves upwards
 *   MERGED_BATCH, BATCHED, CLASS_AXIS   1 or 0: whole batches only; some input has a batch axis;
 *                           the first output has an axis of classes (--argmax)
 *   COUPLING                why the loss does not split over examples (a string), or NULL
 *   FLAGS(X)                X(code, name, has_arg) for every flag, as codegen/flags.py lists them
 *   usage                   the --help text
 *   normalized_by_spec[], targets[]    NULL-ended input names: standardised by the spec; never standardised
 *   forward_reads[]         per input, whether forward() reads it
 */
#ifndef SG_TRAIN_H
#define SG_TRAIN_H

#include <sys/stat.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef SG_MPI
#include <mpi.h>
#endif

/* A metric reported beside the validation loss: its name, its name in the
 * epoch line, how many of the model's metric sums it reads, and its classes (macro_f1). */
typedef struct {
    const char *name, *shown;
    int sums, classes;
} sg_metric;

static const sg_metric metrics[METRICS + 1] = {METRIC_LIST {NULL, NULL, 0, 0}};

/* -- the processes that train together ---------------------------------------------
 * One, or built with MPI (make MPI=1) and started by mpirun, every MPI process:
 * each computes the gradients of its share of every batch, and one allreduce
 * of one buffer per step sums them, weighted by the shares' sizes, into the
 * gradient of the whole batch (up to rounding). */
static int world_rank = 0, world_size = 1;
static int setting_up = 1;  /* until agree(): failures are agreed on before any process leaves */
static double summing = 0;  /* seconds spent in the allreduce this epoch */

/* The end of setting up: where any process found bad input (message; NULL where
 * this one found none), the first of them says so and every process exits 2. */
static void agree(const char *message)
{
    int failed = message ? world_rank : world_size, first = failed;
#ifdef SG_MPI
    MPI_Allreduce(&failed, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
#endif
    if (first < world_size) {
        if (first == world_rank)
            fprintf(stderr, "error: %s\n", message);
        exit(2);
    }
    setting_up = 0;
}

/* Bad input: one line on stderr, exit status 2. While setting up the processes
 * first agree on whose line it is; after that the process that found it says so
 * and ends them all. */
static void fail(const char *format, ...)
{
    char message[2048];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    if (setting_up)
        agree(message);
    fprintf(stderr, "error: %s\n", message);
#ifdef SG_MPI
    if (world_size > 1)
        MPI_Abort(MPI_COMM_WORLD, 2);
#endif
    exit(2);
}

#ifdef SG_MPI
#define MPI_REAL_TYPE (sizeof(real) == sizeof(float) ? MPI_FLOAT : MPI_DOUBLE)

/* At exit, after every process agreed to end (MPI_Abort ends them otherwise). */
static void leave_world(void)
{
    int finalized;
    MPI_Finalized(&finalized);
    if (!finalized)
        MPI_Finalize();
}
#endif

/* values[0..count) summed over the processes, in place, in MPI's fixed order for a given number of them. */
static void sum_over_world(void *values, long count, int doubles)
{
#ifdef SG_MPI
    if (world_size > 1) {
        struct timespec started, ended;
        clock_gettime(CLOCK_MONOTONIC, &started);
        if (count > INT_MAX)
            fail("%ld values are more than one MPI call sums", count);
        MPI_Allreduce(MPI_IN_PLACE, values, (int)count, doubles ? MPI_DOUBLE : MPI_REAL_TYPE, MPI_SUM, MPI_COMM_WORLD);
        clock_gettime(CLOCK_MONOTONIC, &ended);
        summing += (double)(ended.tv_sec - started.tv_sec) + 1e-9 * (double)(ended.tv_nsec - started.tv_nsec);
    }
#endif
    (void)values, (void)count, (void)doubles;
}

/* [first, first + share) of this process's share of count examples. */
static long share_of(long count, long *share)
{
    const long first = world_rank * count / world_size;
    *share = (world_rank + 1) * count / world_size - first;
    return first;
}

/* The examples [first, first + length) of this process's batches in a pass over
 * count in order: the ones it evaluates, and checks when loading. */
static long part_of(long count, long batch_size, long *length)
{
    long batches;
    const long first = share_of((count + batch_size - 1) / batch_size, &batches) * batch_size;
    *length = first >= count ? 0 : first + batches * batch_size > count ? count - first : batches * batch_size;
    return first;
}

/* p, or a clean exit when an allocation failed. */
static void *checked(void *p)
{
    if (!p)
        fail("out of memory");
    return p;
}

/* Buffers that live until exit, released together then. */
static void **owned;
static size_t owned_count;

/* At exit: free every buffer own() recorded. */
static void release_all(void)
{
    while (owned_count)
        free(owned[--owned_count]);
    free(owned);
    owned = NULL;
}

static void *own(void *p)
{
    if (owned_count % 64 == 0)
        owned = checked(realloc(owned, (owned_count + 64) * sizeof *owned));
    return owned[owned_count++] = p;
}

/* Zeroed memory that lives until exit. */
static void *allocate(size_t count, size_t size)
{
    return own(checked(calloc(count ? count : 1, size)));
}

/* out = folder + middle + name + end, failing cleanly when the path does not fit. */
static void make_path(char out[4096], const char *folder, const char *middle, const char *name, const char *end)
{
    int length = snprintf(out, 4096, "%s%s%s%s", folder, middle, name, end);
    if (length < 0 || length >= 4096)
        fail("%s: the path is too long", folder);
}

/* -- .npy files (version 1.0, little-endian, C order) ------------------------------- */

#include "sg_npy.h"  /* the .npy reader of symgraph's C runtime */

/* Writes count values (reals, or int64_t when is_int) of the given shape. */
static int write_npy(const char *path, const void *values, int is_int, int rank, const long *dims, long count)
{
    char header[256], shape[160] = "";
    size_t used = 0;
    for (int d = 0; d < rank; d++)
        used += (size_t)snprintf(shape + used, sizeof shape - used, "%ld,%s", dims[d], d + 1 < rank ? " " : "");
    if (rank > 1)
        shape[used - 1] = '\0';  /* (2, 3) but (2,) */
    size_t item = is_int ? sizeof(int64_t) : sizeof(real);
    int length = snprintf(header, sizeof header, "{'descr': '<%c%d', 'fortran_order': False, 'shape': (%s), }",
                          is_int ? 'i' : 'f', (int)item, shape);
    int padded = ((10 + length + 1 + 63) / 64) * 64 - 10;  /* data starts on a 64-byte boundary */
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    unsigned char start[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(padded & 0xff), (unsigned char)(padded >> 8)};
    int ok = fwrite(start, 1, 10, f) == 10 && fwrite(header, 1, (size_t)length, f) == (size_t)length;
    for (int i = length; ok && i < padded - 1; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && fwrite(values, item, (size_t)count, f) == (size_t)count;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* Whether a has this rank and these dims from axis `from` on (a batched input's first axis is free). */
static int has_shape(const array *a, int rank, const long *dims, int from)
{
    int ok = a->rank == rank;
    for (int d = from; ok && d < rank; d++)
        ok = a->dims[d] == dims[d];
    return ok;
}

/* -- data --------------------------------------------------------------------------- */

typedef struct {
    array inputs[SG_MODEL(num_inputs) + 1];  /* shapes; values only of inputs without a batch axis, converted */
    const unsigned char *stored[SG_MODEL(num_inputs) + 1];  /* each file's values as stored: memory-mapped */
    char kind[SG_MODEL(num_inputs) + 1];  /* and their kind ('f', 'i' or 'u') and width in bytes */
    long width[SG_MODEL(num_inputs) + 1];
    long count;  /* examples */
} dataset;

typedef struct {
    int active;
    real *mean, *std;  /* per feature: the input's size per example */
} statistics;

/* Values [first, first + count) of input k, converted to int64_t or real into out. */
static void values_of(const dataset *data, int k, long first, long count, void *out)
{
    const long width = data->width[k];
    const size_t item = SG_MODEL(inputs)[k].is_int ? sizeof(int64_t) : sizeof(real);
    const unsigned char *from = data->stored[k] + (size_t)first * (size_t)width;
    if ((size_t)width == item && data->kind[k] == (SG_MODEL(inputs)[k].is_int ? 'i' : 'f'))
        memcpy(out, from, (size_t)count * item);  /* stored as the model reads it */
    else
        convert(from, data->kind[k], width, count, SG_MODEL(inputs)[k].is_int, out);
}

/* Why values [first, first + count) of input k are no input of the model, or NULL. */
static const char *bad_values(const dataset *data, int k, long first, long count)
{
    enum { chunk = 4096 };  /* converted a chunk at a time */
    const SG_MODEL(leaf) *leaf = &SG_MODEL(inputs)[k];
    static char why[128];
    union {
        int64_t ids[chunk];
        real x[chunk];
    } got;
    for (long at = first; at < first + count; at += chunk) {
        const long n = first + count - at < chunk ? first + count - at : chunk;
        values_of(data, k, at, n, &got);
        for (long i = 0; i < n; i++) {
            if (leaf->is_int && (got.ids[i] < 0 || got.ids[i] >= leaf->bound)) {
                snprintf(why, sizeof why, "holds ids outside [0, %ld)", leaf->bound);
                return why;
            }
            if (!leaf->is_int && !isfinite(got.x[i]))
                return "holds a value that is not finite";
        }
    }
    return NULL;
}

/* Every input's NAME.npy in folder (with only_forward, those forward() reads),
 * memory-mapped: only the pages of the examples used are ever read. Shapes are
 * checked whole; the values over this process's part of the examples
 * (part_of), the only ones of the files it reads but for the shuffled batches
 * of training, or with whole, over all of them. The mappings last until exit. */
static void load_data(const char *folder, dataset *data, int only_forward, long batch_size, int whole)
{
    char path[4096], why[256], dims[64];
    data->count = -1;
    for (int k = 0; k < SG_MODEL(num_inputs); k++) {
        const SG_MODEL(leaf) *leaf = &SG_MODEL(inputs)[k];
        array *a = &data->inputs[k];
        if (only_forward && !forward_reads[k])
            continue;
        make_path(path, folder, "/", leaf->name, ".npy");
        FILE *f = open_npy(path, leaf->is_int, a, &data->kind[k], &data->width[k], why, sizeof why);
        if (!f)
            fail("%s: %s", path, why);
        const long start = ftell(f);
        void *mapped = a->count ? mmap(NULL, (size_t)start + (size_t)a->count * (size_t)data->width[k], PROT_READ, MAP_PRIVATE, fileno(f), 0) : NULL;
        fclose(f);
        if (mapped == MAP_FAILED)
            fail("%s: cannot map: %s", path, strerror(errno));
        data->stored[k] = mapped ? (const unsigned char *)mapped + start : NULL;
        if (!has_shape(a, leaf->rank, leaf->dims, leaf->batched)) {
            size_t used = 0;
            for (int d = 0; d < leaf->rank; d++)
                used += (size_t)snprintf(dims + used, sizeof dims - used, d ? ", %ld" : "%ld", leaf->dims[d]);
            fail("%s: wrong shape; expected [%s] (%s)", path, dims,
                 leaf->batched ? "the first axis any length" : "it has no batch axis: only a first dim named batch takes any number of examples");
        }
        if (leaf->batched) {
            if (data->count >= 0 && a->dims[0] != data->count)
                fail("%s: the number of examples differs from the other inputs in %s", path, folder);
            data->count = a->dims[0];
        } else {
            a->values = allocate((size_t)a->count, leaf->is_int ? sizeof(int64_t) : sizeof(real));
            values_of(data, k, 0, a->count, a->values);
        }
    }
    if (data->count < 0)
        data->count = 1;  /* no input has a batch axis: one example, the whole data */
    if (data->count == 0)
        fail("%s: holds no examples", folder);
    long rows = data->count;
    const long first = whole ? 0 : part_of(data->count, batch_size, &rows);
    for (int k = 0; k < SG_MODEL(num_inputs); k++) {
        const SG_MODEL(leaf) *leaf = &SG_MODEL(inputs)[k];
        if (only_forward && !forward_reads[k])
            continue;
        const char *bad = bad_values(data, k, leaf->batched ? first * leaf->size : 0, leaf->batched ? rows * leaf->size : leaf->size);
        make_path(path, folder, "/", leaf->name, ".npy");
        if (bad && world_size > 1)
            fail("%s: %s (examples %ld-%ld, read by process %d of %d)", path, bad, first, first + rows - 1, world_rank, world_size);
        if (bad)
            fail("%s: %s", path, bad);
    }
}

/* Copies examples order[first..first + n) (with no order, first..first + n) of
 * every batched input into batch buffers, standardised where stats has the
 * input, and points inputs at them. */
static void gather(const dataset *data, const long *order, long first, long n, const statistics stats[], void *batch[],
    const void *inputs[])
{
    for (int k = 0; k < SG_MODEL(num_inputs); k++) {
        const SG_MODEL(leaf) *leaf = &SG_MODEL(inputs)[k];
        if (!leaf->batched) {
            inputs[k] = data->inputs[k].values;
            continue;
        }
        const size_t item = leaf->is_int ? sizeof(int64_t) : sizeof(real);
        for (long i = 0; i < n; i++)
            values_of(data, k, (order ? order[first + i] : first + i) * leaf->size, leaf->size, (char *)batch[k] + (size_t)(i * leaf->size) * item);
        for (long i = 0; stats[k].active && i < n * leaf->size; i++) {
            real *x = (real *)batch[k] + i;
            *x = (real)(((double)*x - stats[k].mean[i % leaf->size]) / stats[k].std[i % leaf->size]);
        }
        inputs[k] = batch[k];
    }
}

/* -- shuffling: argsort of one random stream per epoch, as the NumPy trainer does ---- */

typedef struct {
    uint64_t key;
    long index;
} sort_item;

/* Order by random key, then by index: numpy.argsort(kind="stable"). */
static int by_key(const void *a, const void *b)
{
    const sort_item *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

static void shuffle(long *order, sort_item *items, long count, uint64_t seed, uint64_t epoch)
{
    for (long i = 0; i < count; i++)
        items[i] = (sort_item){ SG_MODEL(random_bits)(seed, SHUFFLE_STREAM + epoch, (uint64_t)i), i};
    qsort(items, (size_t)count, sizeof *items, by_key);
    for (long i = 0; i < count; i++)
        order[i] = items[i].index;
}

/* -- input normalisation -------------------------------------------------------------- */

/* Mean and standard deviation (1 where constant) of every feature over the
 * examples: each process's over its part, combined in the order of the
 * processes (Chan et al.'s pairwise update, summed). */
static void measure(const dataset *data, int k, long batch_size, statistics *stats)
{
    const SG_MODEL(leaf) *leaf = &SG_MODEL(inputs)[k];
    long rows = 1;
    const long first = leaf->batched ? part_of(data->count, batch_size, &rows) : 0;
    const long size = leaf->size, parts = world_size;
    real *x = allocate((size_t)size, sizeof(real));  /* one example, converted: the part is read twice, never held */
    double *moments = allocate((size_t)(parts * (1 + 2 * size)), sizeof(double));  /* per process: count, means, squared deviations */
    double *mine = moments + world_rank * (1 + 2 * size), *mean = mine + 1, *spread = mine + 1 + size;
    mine[0] = (double)rows;
    for (long r = 0; r < rows; r++) {
        values_of(data, k, (first + r) * size, size, x);
        for (long j = 0; j < size; j++)
            mean[j] += x[j];
    }
    for (long j = 0; j < size; j++)
        mean[j] = rows ? mean[j] / (double)rows : 0;
    for (long r = 0; r < rows; r++) {
        values_of(data, k, (first + r) * size, size, x);
        for (long j = 0; j < size; j++)
            spread[j] += (x[j] - mean[j]) * (x[j] - mean[j]);
    }
    sum_over_world(moments, parts * (1 + 2 * size), 1);  /* each process's slots are its own: the sum gathers them */
    stats->mean = allocate((size_t)size, sizeof(real));
    stats->std = allocate((size_t)size, sizeof(real));
    for (long j = 0; j < size; j++) {
        double count = 0, mean = 0, spread = 0;
        for (long p = 0; p < parts; p++)
            count += moments[p * (1 + 2 * size)];
        for (long p = 0; p < parts; p++)
            mean += parts == 1 ? moments[1 + j] : moments[p * (1 + 2 * size)] * moments[p * (1 + 2 * size) + 1 + j] / count;
        for (long p = 0; p < parts; p++) {
            const double *part = moments + p * (1 + 2 * size);
            const double gap = part[1 + j] - mean;
            spread += part[1 + size + j] + (parts == 1 ? 0 : part[0] * gap * gap);
        }
        const double std = sqrt(spread / count);
        stats->mean[j] = (real)mean;
        stats->std[j] = (real)(std > 1e-12 ? std : 1.0);
    }
    stats->active = 1;
}

/* -- checkpoints ---------------------------------------------------------------------- */

/* The optimisers, in the order of their codes in training.optimizer.npy. */
enum { SGD, ADAM, ADAMW, RMSPROP };
static const char *const optimizer_names[] = {"sgd", "adam", "adamw", "rmsprop", NULL};

/* SGD (with momentum, Nesterov's or not), Adam, AdamW or RMSprop. weight_decay is
 * an L2 penalty added to the gradient, except in AdamW, which shrinks the params. */
typedef struct {
    int kind, nesterov;
    double lr, momentum, weight_decay;
    long step;
    real *m[SG_MODEL(num_params) + 1];  /* momentum or Adam's first moment */
    real *v[SG_MODEL(num_params) + 1];  /* Adam's and RMSprop's second moment */
} optimizer;

/* SGD without momentum or weight decay: the model's sgd_step takes it. */
static int plain_sgd(const optimizer *opt)
{
    return opt->kind == SGD && opt->momentum == 0 && opt->weight_decay == 0;
}

/* Whether the optimiser keeps a first moment (momentum, Adam, AdamW). */
static int uses_m(const optimizer *opt)
{
    return opt->kind == ADAM || opt->kind == ADAMW || (opt->kind == SGD && opt->momentum != 0);
}

/* Whether it keeps a second moment (Adam, AdamW, RMSprop). */
static int uses_v(const optimizer *opt)
{
    return opt->kind != SGD;
}

/* Deletes a checkpoint folder and the files in it (checkpoints hold no subfolders). */
static void remove_folder(const char *folder)
{
    char path[4096];
    DIR *dir = opendir(folder);
    struct dirent *entry;
    while (dir && (entry = readdir(dir)) != NULL)
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) {
            make_path(path, folder, "/", entry->d_name, "");
            unlink(path);
        }
    if (dir)
        closedir(dir);
    rmdir(folder);
}


/* folder/prefixNAME.npy; -1 on a write error. */
static int save_array(const char *folder, const char *prefix, const char *name, const void *values, int is_int,
                      int rank, const long *dims, long count)
{
    char path[4096], file[256];
    snprintf(file, sizeof file, "%s%s", prefix, name);
    make_path(path, folder, "/", file, ".npy");
    return write_npy(path, values, is_int, rank, dims, count);
}

/* The folder that holds path, into folder ("." for a bare name, "/" for "/name"); returns path's last name. */
static const char *folder_of(const char *path, char folder[4096])
{
    make_path(folder, path, "", "", "");
    char *slash = strrchr(folder, '/');
    if (!slash) {
        strcpy(folder, ".");
        return path;
    }
    const char *name = path + (slash - folder) + 1;
    slash[slash == folder] = '\0';
    return name;
}

/* Whether path can be written: the file where it exists, else the folder that would hold it. */
static int can_write(const char *path)
{
    if (access(path, F_OK) == 0)
        return access(path, W_OK) == 0;
    char folder[4096];
    folder_of(path, folder);
    return access(folder, W_OK) == 0;
}

/* The process's umask (set back at once: the trainer runs one thread). */
static mode_t umask_now(void)
{
    mode_t mask = umask(0);
    umask(mask);
    return mask;
}

/* In every checkpoint, listing its files: --save replaces only a folder that has it
 * (its name is no input's: a hyphen is not in identifiers). */
#define MARKER "symgraph-checkpoint.txt"

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* folder/MARKER, listing the .npy files in folder in sorted order; -1 on an error. */
static int write_marker(const char *folder)
{
    enum { most = 3 * SG_MODEL(num_params) + 2 * SG_MODEL(num_inputs) + 1 };  /* the files a checkpoint has */
    static char found[most][256];
    char *names[most];
    int count = 0;
    DIR *dir = opendir(folder);
    if (!dir)
        return -1;
    for (struct dirent *entry; (entry = readdir(dir)) != NULL;) {
        size_t length = strlen(entry->d_name);
        if (length > 4 && strcmp(entry->d_name + length - 4, ".npy") == 0 && count < most) {
            snprintf(found[count], sizeof found[count], "%s", entry->d_name);
            names[count] = found[count];
            count++;
        }
    }
    closedir(dir);
    qsort(names, (size_t)count, sizeof *names, by_name);
    char path[4096];
    make_path(path, folder, "/", MARKER, "");
    FILE *file = fopen(path, "w");
    int ok = file != NULL && fprintf(file, "# a checkpoint of %s, written by its trainer\n", SG_NAME) > 0;
    for (int k = 0; k < count; k++)
        ok = ok && fprintf(file, "%s\n", names[k]) > 0;
    return file != NULL && fclose(file) == 0 && ok ? 0 : -1;
}

/* Why folder is not a folder this trainer wrote, nor an empty one (into why); NULL where it is one. */
static const char *not_ours(const char *folder, char why[320])
{
    struct stat status;
    if (lstat(folder, &status) != 0)
        return strcpy(why, strerror(errno));
    if (S_ISLNK(status.st_mode))
        return strcpy(why, "is a symbolic link");
    if (!S_ISDIR(status.st_mode))
        return strcpy(why, "is a file, not a checkpoint folder");
    static char listed[1 << 16];
    char path[4096], first[256] = "";
    make_path(path, folder, "/", MARKER, "");
    FILE *file = fopen(path, "rb");
    listed[0] = '\n';
    listed[1] = '\0';
    if (file) {
        size_t got = fread(listed + 1, 1, sizeof listed - 2, file);
        listed[got + 1] = '\0';
        fclose(file);
    }
    DIR *dir = opendir(folder);
    if (!dir)
        return strcpy(why, strerror(errno));
    for (struct dirent *entry; (entry = readdir(dir)) != NULL;) {
        char line[300];
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0 || strcmp(entry->d_name, MARKER) == 0)
            continue;
        snprintf(line, sizeof line, "\n%s\n", entry->d_name);
        if ((!file || !strstr(listed, line)) && (!*first || strcmp(entry->d_name, first) < 0))
            snprintf(first, sizeof first, "%s", entry->d_name);
    }
    closedir(dir);
    if (!*first)
        return NULL;
    snprintf(why, 320, "holds files this trainer did not write (%s)", first);
    return why;
}

/* After a crash between save()'s two renames only FOLDER.previous is complete: put it back
 * (only a checkpoint this trainer wrote: a folder of the user's stays where it is). */
static void recover(const char *folder)
{
    char previous[4096], marker[4096], why[320];
    struct stat status;
    make_path(previous, folder, "", "", ".previous");
    make_path(marker, previous, "/", MARKER, "");
    if (lstat(folder, &status) != 0 && access(marker, F_OK) == 0 && !not_ours(previous, why))
        rename(previous, folder);
}

/* Refuse, before any training, a --save (or --save-best) folder this trainer
 * did not write: it may not exist (in a folder that can be written), be
 * empty, or be a checkpoint whose files its marker lists. FOLDER.previous,
 * which saving replaces, may only be such a checkpoint. */
static void check_save(const char *flag, const char *folder)
{
    char previous[4096], why[320];
    struct stat status;
    make_path(previous, folder, "", "", ".previous");
    if (lstat(previous, &status) == 0 && not_ours(previous, why))
        fail("%s %s: %s %s, and saving would replace it; move it away", flag, folder, previous, why);
    recover(folder);
    if (lstat(folder, &status) != 0) {
        if (errno != ENOENT)
            fail("%s %s: %s", flag, folder, strerror(errno));
        if (!can_write(folder))
            fail("%s %s: the folder that would hold it does not exist or cannot be written", flag, folder);
        return;
    }
    if (not_ours(folder, why))
        fail("%s %s: %s; choose another folder", flag, folder, why);
}

static int save(const char *folder, real *const params[], const optimizer *opt, long epoch, uint64_t seed,
                const statistics stats[])
{
    char staging[4096], previous[4096];
    recover(folder);
    make_path(staging, folder, "", "", ".tmp.XXXXXX");
    if (!mkdtemp(staging))
        return -1;
    int ok = 1;
    for (int k = 0; ok && k < SG_MODEL(num_params); k++) {
        const SG_MODEL(leaf) *leaf = &SG_MODEL(params)[k];
        ok = save_array(staging, "", leaf->name, params[k], 0, leaf->rank, leaf->dims, leaf->size) == 0;
        ok = ok && (!uses_m(opt) || save_array(staging, "optimizer.m.", leaf->name, opt->m[k], 0, leaf->rank, leaf->dims, leaf->size) == 0);
        ok = ok && (!uses_v(opt) || save_array(staging, "optimizer.v.", leaf->name, opt->v[k], 0, leaf->rank, leaf->dims, leaf->size) == 0);
    }
    for (int k = 0; ok && k < SG_MODEL(num_inputs); k++) {
        const SG_MODEL(leaf) *leaf = &SG_MODEL(inputs)[k];
        const long *dims = leaf->dims + leaf->batched;  /* per example */
        if (stats[k].active)
            ok = save_array(staging, "normalize.mean.", leaf->name, stats[k].mean, 0, leaf->rank - leaf->batched, dims, leaf->size) == 0 &&
                 save_array(staging, "normalize.std.", leaf->name, stats[k].std, 0, leaf->rank - leaf->batched, dims, leaf->size) == 0;
    }
    const int64_t state[3] = {epoch, opt->step, (int64_t)seed};
    const long three = 3;
    ok = ok && save_array(staging, "", "training.state", state, 1, 1, &three, 3) == 0;
    const real record[7] = {(real)opt->kind, (real)opt->momentum, (real)opt->nesterov, (real)BETA1, (real)BETA2, (real)EPSILON,
                            (real)opt->weight_decay};
    const long seven = 7;
    ok = ok && save_array(staging, "", "training.optimizer", record, 0, 1, &seven, 7) == 0;
    ok = ok && write_marker(staging) == 0;
    ok = ok && chmod(staging, 0777 & ~umask_now()) == 0;  /* mkdtemp's folder is private; a checkpoint is an ordinary folder */
    if (!ok) {
        remove_folder(staging);
        return -1;
    }
    make_path(previous, folder, "", "", ".previous");
    if (access(folder, F_OK) == 0) {
        remove_folder(previous);
        if (rename(folder, previous) != 0)
            return -1;
    }
    if (rename(staging, folder) != 0)
        return -1;
    remove_folder(previous);
    return 0;
}

/* Reads folder/prefixNAME.npy into out (count reals of the given shape); 1 when absent and optional. */
static int load_array(const char *folder, const char *prefix, const char *name, int rank, const long *dims, long count,
                      int optional, real *out)
{
    char path[4096], file[256], why[256];
    array a = {0};
    snprintf(file, sizeof file, "%s%s", prefix, name);
    make_path(path, folder, "/", file, ".npy");
    if (optional && access(path, F_OK) != 0)
        return 1;
    if (read_npy(path, 0, &a, why, sizeof why) != 0)
        fail("%s: %s", path, why);
    if (!has_shape(&a, rank, dims, 0)) {
        free(a.values);
        fail("%s: the shape differs from %s's", path, name);
    }
    memcpy(out, a.values, (size_t)count * sizeof(real));
    free(a.values);
    return 0;
}

/* Params, and when the checkpoint has training.state.npy the optimiser's state, the
 * epochs done, the seed and the normalisation to resume with. */
static void check_model(const char *folder);

/* The optimiser's settings that flags may give (the others come from a resumed checkpoint). */
enum { GIVEN_OPTIMIZER, GIVEN_MOMENTUM, GIVEN_NESTEROV, GIVEN_DECAY, GIVEN_COUNT };

/* The params, the normalisation and, where resume, the state to resume from:
 * the epochs, steps and seed, and the optimiser and its settings, but for
 * those given[] says a flag gave. Evaluation and prediction read neither. */
static void load_checkpoint(const char *folder, real *const params[], optimizer *opt, long *epoch, uint64_t *seed,
                            int seed_given, statistics stats[], int resume, const int given[GIVEN_COUNT])
{
    char path[4096], why[256];
    array state = {0}, record = {0};
    recover(folder);
    check_model(folder);
    for (int k = 0; k < SG_MODEL(num_params); k++) {
        const SG_MODEL(leaf) *leaf = &SG_MODEL(params)[k];
        load_array(folder, "", leaf->name, leaf->rank, leaf->dims, leaf->size, 0, params[k]);
    }
    make_path(path, folder, "/", "training.optimizer", ".npy");
    int recorded = resume && access(path, F_OK) == 0;
    if (recorded) {
        if (read_npy(path, 0, &record, why, sizeof why) != 0 || record.count != 7)
            fail("%s: %s", path, record.count != 7 ? "expected the optimiser's kind and 6 settings" : why);
        const real *settings = record.values;
        const double code = settings[0];
        if (code != 0 && code != 1 && code != 2 && code != 3)
            fail("%s: not an optimiser this trainer knows", path);
        if (given[GIVEN_OPTIMIZER] && (int)code != opt->kind)
            fail("--init-from %s: was trained with %s; resume it with --optimizer %s, or start afresh without --init-from", folder,
                 optimizer_names[(int)code], optimizer_names[(int)code]);
        opt->kind = (int)code;
        if (!given[GIVEN_MOMENTUM])
            opt->momentum = settings[1];
        if (!given[GIVEN_NESTEROV])
            opt->nesterov = settings[2] != 0;
        if (!given[GIVEN_DECAY])
            opt->weight_decay = settings[6];
        free(record.values);
    }
    for (int k = 0; k < SG_MODEL(num_inputs); k++) {  /* the checkpoint's normalisation, --normalize given or not */
        const SG_MODEL(leaf) *leaf = &SG_MODEL(inputs)[k];
        if (leaf->is_int || !leaf->batched)
            continue;
        real *mean = allocate((size_t)leaf->size, sizeof(real)), *std = allocate((size_t)leaf->size, sizeof(real));
        const long *dims = leaf->dims + 1;
        if (load_array(folder, "normalize.mean.", leaf->name, leaf->rank - 1, dims, leaf->size, 1, mean) == 0 &&
            load_array(folder, "normalize.std.", leaf->name, leaf->rank - 1, dims, leaf->size, 1, std) == 0) {
            stats[k].mean = mean;
            stats[k].std = std;
            stats[k].active = 2;  /* loaded, not to be measured on the data */
        }
    }
    make_path(path, folder, "/", "training.state", ".npy");
    if (!resume || access(path, F_OK) != 0)
        return;  /* parameters only: start afresh from them */
    if (read_npy(path, 1, &state, why, sizeof why) != 0 || state.count != 3)
        fail("%s: %s", path, state.count != 3 ? "expected [epochs, steps, seed]" : why);
    const int64_t *values = state.values;
    if (values[0] < 0 || values[1] < 0 || values[2] < 0)
        fail("%s: expected [epochs, steps, seed], whole numbers >= 0", path);
    *epoch = (long)values[0];
    opt->step = (long)values[1];
    if (!seed_given)
        *seed = (uint64_t)values[2];
    free(state.values);
    for (int k = 0; k < SG_MODEL(num_params); k++) {
        const SG_MODEL(leaf) *leaf = &SG_MODEL(params)[k];
        if (uses_m(opt))  /* momentum switched on since: it starts from zero */
            load_array(folder, "optimizer.m.", leaf->name, leaf->rank, leaf->dims, leaf->size, recorded, opt->m[k]);
        if (uses_v(opt))
            load_array(folder, "optimizer.v.", leaf->name, leaf->rank, leaf->dims, leaf->size, 0, opt->v[k]);
    }
}

/* A checkpoint of this model: its marker names the model, and its params are this model's. */
static void check_model(const char *folder)
{
    char path[4096], line[4096], name[256] = "another model";
    struct stat status;
    if (stat(folder, &status) != 0)
        fail("--init-from %s: %s", folder, strerror(errno));
    if (!S_ISDIR(status.st_mode))
        fail("--init-from %s: is a file, not a checkpoint folder", folder);
    make_path(path, folder, "/", MARKER, "");
    FILE *f = fopen(path, "r");
    if (!f) {  /* an older or hand-made checkpoint: its files are checked one by one, once it has the params */
        for (int k = 0; k < SG_MODEL(num_params); k++) {
            make_path(line, folder, "/", SG_MODEL(params)[k].name, ".npy");
            if (access(line, F_OK) != 0)
                fail("--init-from %s: is no checkpoint: it has neither %s nor %s.npy", folder, MARKER, SG_MODEL(params)[k].name);
        }
        return;
    }
    int ours = 1, found = 0, first = 1;
    char missing[256] = "";
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (first && sscanf(line, "# a checkpoint of %255[^,]", name) == 1)
            ours &= strcmp(name, SG_NAME) == 0;
        first = 0;
        if (line[0] == '#' || line[0] == '\0')
            continue;
        make_path(path, folder, "/", line, "");
        if (!*missing && access(path, F_OK) != 0)
            snprintf(missing, sizeof missing, "%.255s", line);
        size_t length = strlen(line);
        if (length < 5 || strcmp(line + length - 4, ".npy") != 0 || memchr(line, '.', length - 4))
            continue;  /* not a parameter's file */
        line[length - 4] = '\0';
        int known = 0;
        for (int k = 0; k < SG_MODEL(num_params); k++)
            known |= strcmp(SG_MODEL(params)[k].name, line) == 0;
        ours &= known;
        found += known;
    }
    fclose(f);
    if (!ours || found != SG_MODEL(num_params))
        fail("--init-from %s: is a checkpoint of %s, not of %s (its params differ)", folder, name, SG_NAME);
    if (*missing)
        fail("--init-from %s: lists %s, which is missing", folder, missing);
}

/* -- the optimiser, in the NumPy trainer's order of operations ------------------------------ */

/* Elements [first, last) of parameter k; bias1 and bias2 are Adam's bias corrections. */
static void update_range(const optimizer *opt, int k, real *p, const real *g, long first, long last, real bias1, real bias2)
{
    const real lr = (real)opt->lr, momentum = (real)opt->momentum, decay = (real)opt->weight_decay;
    const real shrink = (real)1 - lr * decay;  /* AdamW's decoupled weight decay */
    real *m = opt->m[k], *v = opt->v[k];
    for (long i = first; i < last; i++) {
        const real grad = decay != 0 && opt->kind != ADAMW ? g[i] + decay * p[i] : g[i];
        if (opt->kind == ADAM || opt->kind == ADAMW) {
            if (opt->kind == ADAMW)
                p[i] *= shrink;
            m[i] = (real)BETA1 * m[i] + (real)(1 - BETA1) * grad;
            v[i] = (real)BETA2 * v[i] + (real)(1 - BETA2) * grad * grad;
            p[i] -= lr * (m[i] / bias1) / (SQRT(v[i] / bias2) + (real)EPSILON);
        } else if (opt->kind == RMSPROP) {
            v[i] = (real)BETA2 * v[i] + (real)(1 - BETA2) * grad * grad;
            p[i] -= lr * grad / (SQRT(v[i]) + (real)EPSILON);
        } else if (momentum != 0 && opt->nesterov) {
            m[i] = momentum * m[i] + grad;
            p[i] -= lr * (grad + momentum * m[i]);
        } else if (momentum != 0) {
            m[i] = momentum * m[i] + grad;
            p[i] -= lr * m[i];
        } else {
            p[i] -= lr * grad;
        }
    }
}

static void update(optimizer *opt, real *const params[], real *const grads[])
{
    enum { block = 1 << 14 };  /* elements per task of an OpenMP build; smaller parameters stay on one thread */
    opt->step++;
    const real bias1 = (real)(1 - pow(BETA1, (double)opt->step)), bias2 = (real)(1 - pow(BETA2, (double)opt->step));
    for (int k = 0; k < SG_MODEL(num_params); k++) {
        const long size = SG_MODEL(params)[k].size;
        if (size < 4 * block) {
            update_range(opt, k, params[k], grads[k], 0, size, bias1, bias2);
            continue;
        }
#ifdef _OPENMP
#pragma omp parallel for  /* each element on its own: the same results */
#endif
        for (long first = 0; first < size; first += block)
            update_range(opt, k, params[k], grads[k], first, first + block < size ? first + block : size, bias1, bias2);
    }
}

/* -- evaluation and the gradient check ------------------------------------------------ */

/* The examples a pass over the data uses: all of them, or where the model
 * takes whole batches only, those of the whole batches. */
static long usable(long count, long batch_size)
{
#if MERGED_BATCH
    if (count < batch_size)
        fail("%ld examples make no whole batch of %ld, and this model takes whole batches only", count, batch_size);
    return count - count % batch_size;
#else
    (void)batch_size;
    return count;
#endif
}

/* Mean loss over data, and each metric the model reports: each process's over
 * its part of the batches, summed over the processes. */
static void evaluate(real *const params[], const dataset *data, long batch_size, const statistics stats[], void *batch[],
    double *loss, double metric[])
{
    const void *inputs[SG_MODEL(num_inputs) + 1];
    double sums[1 + SG_METRIC_SUMS] = {0}, *summed = sums + 1;  /* the loss times the examples, then the metrics' sums */
    long mine;
    const long used = usable(data->count, batch_size), first = part_of(used, batch_size, &mine);
    for (long start = first; start < first + mine; start += batch_size) {
        long n = used - start < batch_size ? used - start : batch_size;
        double value, part[SG_METRIC_SUMS];
        gather(data, NULL, start, n, stats, batch, inputs);
        if (SG_MODEL(evaluate)(params, inputs, n, &value, part) != 0)
            fail("evaluation refused a batch");
        sums[0] += value * (double)n;
        for (int s = 0; s < SG_METRIC_SUMS; s++)
            summed[s] += part[s];
    }
    sum_over_world(sums, 1 + SG_METRIC_SUMS, 1);
    *loss = sums[0] / (double)used;
    const double scored = (double)used * SCORED;
    for (int k = 0, at = 0; k < METRICS; at += metrics[k].sums, k++) {
        const sg_metric *m = &metrics[k];
        if (strcmp(m->name, "perplexity") == 0)
            metric[k] = exp(*loss < 700 ? *loss : 700);
        else if (strcmp(m->name, "rmse") == 0)
            metric[k] = sqrt(summed[at] / scored);
        else if (strcmp(m->name, "macro_f1") == 0) {
            /* the mean over classes of 2 TP / (2 TP + FP + FN), among classes that occur or are predicted */
            const double *tp = summed + at, *fp = tp + m->classes, *fn = fp + m->classes;
            double f1 = 0;
            int counted = 0;
            for (int c = 0; c < m->classes; c++)
                if (2 * tp[c] + fp[c] + fn[c] > 0)
                    f1 += 2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]), counted++;
            metric[k] = counted ? f1 / counted : 0;
        } else
            metric[k] = summed[at] / scored;
    }
}

/* "  val loss 0.1234  val acc 0.9876" */
static void report(const char *prefix, double loss, const double metric[])
{
    printf("  %sloss %.4f", prefix, loss);
    for (int k = 0; k < METRICS; k++)
        printf(strcmp(metrics[k].name, "perplexity") == 0 ? "  %s%s %.2f" : "  %s%s %.4f", prefix, metrics[k].shown, metric[k]);
}

/* Appends one CSV row (the header first when the file is new); -1 on a write error. */
/* The log's first line: its columns. */
static void log_header(char out[1024])
{
    size_t used = (size_t)snprintf(out, 1024, "epoch,train_loss,val_loss,");
    for (int k = 0; k < METRICS; k++)
        used += (size_t)snprintf(out + used, 1024 - used, "val_%s,", metrics[k].name);
    snprintf(out + used, 1024 - used, "lr,grad_norm,examples_per_second\n");
}

/* Whether path is empty or starts with this trainer's log header. */
static int is_our_log(const char *path)
{
    char header[1024], line[1024] = "";
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    const int empty = !fgets(line, sizeof line, f);
    fclose(f);
    log_header(header);
    return empty || strcmp(line, header) == 0;
}

static int log_row(const char *path, long epoch, double train_loss, int evaluated, double loss, const double metric[], double lr,
                   double grad_norm, double rate)
{
    FILE *f = fopen(path, "r");
    int fresh = f == NULL || fgetc(f) == EOF;
    char validation[32] = "", values[METRICS + 1][32] = { {""} }, norm[32] = "", header[1024];
    if (f)
        fclose(f);
    if (evaluated) {
        snprintf(validation, sizeof validation, "%.6g", loss);
        for (int k = 0; k < METRICS; k++)
            snprintf(values[k], sizeof values[k], "%.6g", metric[k]);
    }
    if (grad_norm >= 0)  /* -1: the fused SGD step never holds the whole gradient */
        snprintf(norm, sizeof norm, "%.6g", grad_norm);
    f = fopen(path, "a");
    if (!f)
        return -1;
    if (fresh) {
        log_header(header);
        fputs(header, f);
    }
    fprintf(f, "%ld,%.6g,%s,", epoch, train_loss, validation);
    for (int k = 0; k < METRICS; k++)
        fprintf(f, "%s,", values[k]);
    fprintf(f, "%.6g,%s,%.0f\n", lr, norm, rate);
    return fclose(f);
}

/* Central differences of the double-precision model on one batch. */
static int gradcheck(const dataset *data, long batch_size, const statistics stats[], void *batch[], real *const start[], uint64_t seed)
{
    enum { element_limit = 32, directions = 6 };
    const double eps = 1e-6, rtol = 1e-6, atol = 1e-8;
    long n = data->count < batch_size ? data->count : batch_size;
    const void *inputs[SG_MODEL(num_inputs) + 1];
    double *params[SG_MODEL(num_params) + 1], *grads[SG_MODEL(num_params) + 1], *scratch[SG_MODEL(num_params) + 1];
    double *shifted[SG_MODEL(num_params) + 1];
    void *doubled[SG_MODEL(num_inputs) + 1];
    gather(data, NULL, 0, n, stats, batch, inputs);
    for (int k = 0; k < SG_MODEL(num_inputs); k++) {  /* float inputs in double */
        const SG_MODEL(leaf) *leaf = &SG_MODEL(inputs)[k];
        long count = leaf->batched ? leaf->size * n : leaf->size;
        doubled[k] = allocate((size_t)count, 8);
        for (long i = 0; i < count; i++) {
            if (leaf->is_int)
                ((int64_t *)doubled[k])[i] = ((const int64_t *)inputs[k])[i];
            else
                ((double *)doubled[k])[i] = ((const real *)inputs[k])[i];
        }
        inputs[k] = doubled[k];
    }
    for (int k = 0; k < SG_MODEL(num_params); k++) {
        long size = SG_MODEL(params)[k].size;
        params[k] = allocate((size_t)size, sizeof(double));
        grads[k] = allocate((size_t)size, sizeof(double));
        scratch[k] = allocate((size_t)size, sizeof(double));
        for (long i = 0; i < size; i++)
            params[k][i] = start[k][i];
    }
    double loss, up, down;
    if (SG_CHECK(loss_and_grads)(params, inputs, n, 0, 0, &loss, grads) != 0)
        fail("the gradient check batch was refused");
    printf("gradient check (%s model, central differences in float64) on %ld examples\n", SG_DTYPE, n);
    printf("%-12s  %9s  %6s  %11s  %11s  result\n", "param", "size", "probes", "max abs err", "max rel err");
    int all_ok = 1;
    for (int k = 0; k < SG_MODEL(num_params); k++) {
        long size = SG_MODEL(params)[k].size;
        int probes = size <= element_limit ? (int)size : directions;
        double *direction = checked(calloc((size_t)size, sizeof(double))), worst_abs = 0, worst_rel = 0;
        for (int probe = 0; probe < probes; probe++) {
            double norm = 0;
            for (long i = 0; i < size; i++) {
                if (size <= element_limit)
                    direction[i] = i == probe;
                else  /* a random direction: uniform on [-1, 1) per element */
                    direction[i] = 2.0 * (double)(SG_MODEL(random_bits)(seed, GRADCHECK_STREAM + (uint64_t)k, (uint64_t)(probe * size + i)) >> 11) * 0x1p-53 - 1.0;
                norm += direction[i] * direction[i];
            }
            double analytic = 0;
            for (long i = 0; i < size; i++)
                analytic += grads[k][i] * (direction[i] /= sqrt(norm));
            for (int j = 0; j < SG_MODEL(num_params); j++)
                shifted[j] = params[j];
            shifted[k] = checked(calloc((size_t)size, sizeof(double)));
            for (long i = 0; i < size; i++)
                shifted[k][i] = params[k][i] + eps * direction[i];
            SG_CHECK(loss_and_grads)(shifted, inputs, n, 0, 0, &up, scratch);
            for (long i = 0; i < size; i++)
                shifted[k][i] = params[k][i] - eps * direction[i];
            SG_CHECK(loss_and_grads)(shifted, inputs, n, 0, 0, &down, scratch);
            free(shifted[k]);
            double numeric = (up - down) / (2 * eps), error = fabs(numeric - analytic);
            double scale = fmax(fmax(fabs(numeric), fabs(analytic)), 1e-300);
            worst_abs = fmax(worst_abs, error);
            worst_rel = fmax(worst_rel, error / scale);
        }
        int ok = worst_abs <= atol || worst_rel <= rtol;
        all_ok &= ok;
        printf("%-12s  %9ld  %6d  %11.3e  %11.3e  %s\n", SG_MODEL(params)[k].name, size, probes, worst_abs, worst_rel, ok ? "ok" : "FAIL");
        free(direction);
    }
    return all_ok ? 0 : 1;
}

/* -- the command line ------------------------------------------------------------------- */

/* The learning rate in force in an epoch (counted from 1): a linear warm-up over
 * the first warmup epochs, then the schedule over the rest (as the NumPy trainer). */
static double scheduled(double lr, int schedule, long warmup, double decay, long step_epochs, long epoch, long epochs)
{
    if (epoch <= warmup)
        return lr * (double)epoch / (double)warmup;
    const long t = epoch - warmup - 1, span = epochs - warmup > 1 ? epochs - warmup : 1;
    if (schedule == 1)
        return lr * pow(decay, (double)(t / step_epochs));
    if (schedule == 2)
        return lr * pow(decay, (double)t);
    if (schedule == 3)
        return lr * 0.5 * (1.0 + cos(3.141592653589793 * (double)t / (double)span));
    return lr;
}

/* The gradients' global norm (double, in the params' order); above limit (when
 * not 0) the gradients are scaled down to it in place. */
static double clip(real *const grads[], double limit)
{
    double total = 0;
    for (int k = 0; k < SG_MODEL(num_params); k++)
        for (long i = 0; i < SG_MODEL(params)[k].size; i++)
            total += (double)grads[k][i] * (double)grads[k][i];
    const double norm = sqrt(total);
    if (limit > 0 && norm > limit) {
        const real scale = (real)(limit / norm);
        for (int k = 0; k < SG_MODEL(num_params); k++)
            for (long i = 0; i < SG_MODEL(params)[k].size; i++)
                grads[k][i] *= scale;
    }
    return norm;
}

/* Whether a validation score beats the best so far (accuracy, top-k and F1 grow; losses and errors shrink). */
static int better(double score, double best, int first)
{
#if HIGHER_IS_BETTER
    return first || score > best;
#else
    return first || score < best;
#endif
}

/* On a terminal, one line within the epoch, redrawn in place at most twice a second. */
static void progress(long done, long batches, long examples, double loss, double seconds, double *shown)
{
    if (seconds - *shown < 0.5)
        return;
    *shown = seconds;
    printf("\r  batch %ld/%ld  %.0f ex/s  loss %.4f  %.0f s left ", done, batches, (double)examples / seconds, loss,
           seconds / (double)done * (double)(batches - done));
    fflush(stdout);
}

static double since(const struct timespec *started)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - started->tv_sec) + 1e-9 * (double)(now.tv_nsec - started->tv_nsec);
}

/* A flag's value among names (a NULL-ended list): its index, or a clean exit. */
static int choice(const char *flag, const char *text, const char *const names[])
{
    int count = 0;
    for (; names[count]; count++)
        if (strcmp(names[count], text) == 0)
            return count;
    char said[128] = "";
    size_t used = 0;
    for (int i = 0; i < count; i++)
        used += (size_t)snprintf(said + used, sizeof said - used, "%s%s", names[i], i + 2 < count ? ", " : i + 1 < count ? " or " : "");
    fail("%s takes %s, got '%s'", flag, said, text);
    return -1;
}

/* --predict: the first output of the spec for every example in the
 * folder, with the checkpoint's normalisation, or with argmax the index of its
 * largest entry along the last axis; written to out as .npy. */
static void predict(real *const params[], const dataset *data, long batch_size, const statistics stats[], void *batch[],
    const char *out, int argmax)
{
    const SG_MODEL(leaf) *leaf = &SG_MODEL(outputs)[0];
    const long per = leaf->size, classes = leaf->rank ? leaf->dims[leaf->rank - 1] : 1;
    const long examples = leaf->batched ? data->count : 1;
#if MERGED_BATCH
    if (data->count % batch_size != 0)
        fail("--predict: %ld examples make no whole number of batches of %ld, and this model takes whole batches only", data->count, batch_size);
#endif
    if (!leaf->batched && data->count > batch_size)
        fail("--predict: output %s has no batch axis (it sums up a batch): give at most %ld examples", leaf->name, batch_size);
    real *values = allocate((size_t)(examples * per), sizeof(real));
    real *outputs[SG_MODEL(num_outputs) + 1];
    for (int k = 0; k < SG_MODEL(num_outputs); k++)
        outputs[k] = allocate((size_t)(SG_MODEL(outputs)[k].size * batch_size), sizeof(real));
    const void *inputs[SG_MODEL(num_inputs) + 1];
    for (long start = 0; start < data->count; start += batch_size) {
        long n = data->count - start < batch_size ? data->count - start : batch_size;
        gather(data, NULL, start, n, stats, batch, inputs);
        if (SG_MODEL(forward)(params, inputs, n, outputs) != 0)
            fail("the model refused a batch of %ld examples", n);
        memcpy(values + (leaf->batched ? start * per : 0), outputs[0], (size_t)((leaf->batched ? n : 1) * per) * sizeof(real));
    }
    char temporary[4096];  /* written whole, then renamed over out: never a half-written file */
    make_path(temporary, out, "", "", ".partial");
    long dims[SG_MAX_RANK];
    for (int d = 0; d < leaf->rank; d++)
        dims[d] = d == 0 && leaf->batched ? data->count : leaf->dims[d];
    int status;
    if (argmax) {
        const long rows = examples * per / classes;
        int64_t *best = allocate((size_t)rows, sizeof *best);
        for (long r = 0; r < rows; r++) {
            best[r] = 0;
            for (long c = 1; c < classes; c++)
                if (values[r * classes + c] > values[r * classes + best[r]])
                    best[r] = c;
        }
        status = write_npy(temporary, best, 1, leaf->rank - 1, dims, rows);
    } else {
        status = write_npy(temporary, values, 0, leaf->rank, dims, examples * per);
    }
    if (status != 0 || rename(temporary, out) != 0) {
        unlink(temporary);
        fail("%s: cannot write the predictions: %s", out, strerror(errno));
    }
}

/* A flag's number, at least low, or a clean exit. */
static double number(const char *flag, const char *text, double low)
{
    char *end;
    double value = strtod(text, &end);
    int decimal = text[strspn(text, "+-0123456789.eE")] == '\0' && text[0] != ' ';  /* as the NumPy trainer: no hex, no spaces */
    if (end == text || *end != '\0' || !decimal || !isfinite(value) || value < low)
        fail("%s takes a number >= %g, got '%s'", flag, low, text);
    return value;
}

/* A flag's whole number, at least low, or a clean exit. */
static long whole(const char *flag, const char *text, long low)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (text[strspn(text, "+-0123456789")] != '\0' || end == text || *end != '\0' || errno != 0 || value < low)
        fail("%s takes a whole number >= %ld, got '%s'", flag, low, text);
    return value;
}

/* The index of a batched float input, or a clean exit naming the flag. */
static int input_index(const char *name)
{
    for (int k = 0; targets[k]; k++)
        if (strcmp(name, targets[k]) == 0)
            fail("--normalize %s: the loss's target stays in its own units, as the metric and the predictions do", name);
    for (int k = 0; k < SG_MODEL(num_inputs); k++)
        if (strcmp(SG_MODEL(inputs)[k].name, name) == 0 && !SG_MODEL(inputs)[k].is_int && SG_MODEL(inputs)[k].batched)
            return k;
    fail("--normalize %s: not a batched float input of this model", name);
    return -1;
}

/* Whether two paths name the same place: the same folder holds the same name. */
static int same_path(const char *a, const char *b)
{
    char where[2][PATH_MAX + 4096 + 2];
    const char *paths[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        char trimmed[4096], folder[4096], found[PATH_MAX];
        make_path(trimmed, paths[k], "", "", "");
        size_t length = strlen(trimmed);
        while (length > 1 && trimmed[length - 1] == '/')  /* ck/ is ck */
            trimmed[--length] = '\0';
        const char *name = folder_of(trimmed, folder);
        if (!realpath(folder, found))
            return strcmp(a, b) == 0;
        snprintf(where[k], sizeof where[k], "%s/%s", found, name);
    }
    return strcmp(where[0], where[1]) == 0;
}

/* Parse the arguments, load the data, then train (or --eval, --predict or --gradcheck). */
int main(int argc, char **argv)
{
    static const char *const schedules[] = {"constant", "step", "exponential", "cosine", NULL};
    const char *data_dir = NULL, *val_dir = NULL, *init_from = NULL, *save_to = NULL, *log_to = NULL, *best_to = NULL;
    const char *predict_dir = NULL, *predict_to = NULL;
    long epochs = EPOCHS, batch_size = BATCH_SIZE, done = 0, warmup = WARMUP, step_epochs = STEP_EPOCHS, patience = PATIENCE;
    long threads = 0;
    uint64_t seed = SEED;
    int check = 0, eval_only = 0, seed_given = 0, argmax = 0, patience_given = 0, schedule = choice("schedule", SCHEDULE, schedules);
    int given[GIVEN_COUNT] = {0};  /* the optimiser's settings the flags give: a resumed run takes its checkpoint's others */
    double base_lr = LEARNING_RATE, decay = DECAY, clip_norm = CLIP_NORM;
    optimizer opt = {choice("optimizer", OPTIMIZER, optimizer_names), NESTEROV, LEARNING_RATE, MOMENTUM, WEIGHT_DECAY, 0, {0}, {0}};
    statistics stats[SG_MODEL(num_inputs) + 1] = { {0} };
    atexit(release_all);
#ifdef SG_MPI
    MPI_Init(&argc, &argv);
    atexit(leave_world);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
#else
    /* started by mpirun as one of several processes: each would train alone and write the same checkpoint */
    const char *launched = getenv("OMPI_COMM_WORLD_SIZE") ? getenv("OMPI_COMM_WORLD_SIZE") : getenv("PMI_SIZE");
    const char *rank = getenv("OMPI_COMM_WORLD_RANK") ? getenv("OMPI_COMM_WORLD_RANK") : getenv("PMI_RANK");
    if (launched && atol(launched) > 1) {
        if (!rank || atol(rank) == 0)
            fprintf(stderr, "error: started as one of %s MPI processes, but this trainer was built without MPI; build it with make MPI=1\n", launched);
        return 2;
    }
#endif
    const int talk = world_rank == 0;  /* the first process alone prints, logs and saves */
    for (int i = 0; normalized_by_spec[i]; i++)
        stats[input_index(normalized_by_spec[i])].active = 1;
    /* The flags, by getopt_long, each under its whole name only (as the NumPy trainer's argparse takes
     * them: no --epoch for --epochs); "+" stops at the first word that is no flag, which is refused. */
#define FLAG_CODE(code, name, has_arg) code,
#define FLAG_ENTRY(code, name, has_arg) {name, has_arg, NULL, code},
    enum { FLAG_FIRST = 255, FLAGS(FLAG_CODE) };  /* 256 on: no character's code */
    static const struct option flags[] = {FLAGS(FLAG_ENTRY) {NULL, 0, NULL, 0}};
#undef FLAG_CODE
#undef FLAG_ENTRY
    opterr = 0;  /* its messages are ours */
    for (int i = 1; i < argc; i++)  /* help, whatever else is given (as the NumPy trainer) */
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            if (talk)
                fputs(usage, stdout);
            return 0;
        }
    for (;;) {
        const int at = optind;
        int which = -1;
        const int code = getopt_long(argc, argv, "+:h", flags, &which);
        if (code == -1)
            break;
        char flag[256];  /* the flag as given, without =value */
        snprintf(flag, sizeof flag, "%.*s", (int)strcspn(argv[at], "="), argv[at]);
        if (which >= 0 && strcmp(flag + 2, flags[which].name) != 0)  /* getopt_long takes abbreviations; we do not */
            fail("unknown argument '%s' (see --help)", flag);
        const char *value = optarg;
        if (value && (!*value || (optind - at == 2 && strncmp(value, "--", 2) == 0)))  /* --lr --epochs 2: the next flag is no value */
            fail("%s needs a value", flag);
        switch (code) {
        case 'h':
        case FLAG_HELP:
            if (talk)
                fputs(usage, stdout);
            return 0;
        case FLAG_GRADCHECK: check = 1; break;
        case FLAG_EVAL: eval_only = 1; break;
        case FLAG_ARGMAX: argmax = 1; break;
        case FLAG_NESTEROV: opt.nesterov = 1, given[GIVEN_NESTEROV] = 1; break;
        case ':': fail("%s needs a value", flag); break;
        case '?':
            if (strchr(argv[at], '=') && strncmp(argv[at], "--", 2) == 0)
                for (int k = 0; flags[k].name; k++)
                    if (flags[k].has_arg == no_argument && strcmp(flag + 2, flags[k].name) == 0)
                        fail("argument %s: ignored explicit argument '%s'", flag, strchr(argv[at], '=') + 1);
            fail("unknown argument '%s' (see --help)", flag);
            break;
        case FLAG_DATA: data_dir = value; break;
        case FLAG_VAL: val_dir = value; break;
        case FLAG_INIT_FROM: init_from = value; break;
        case FLAG_SAVE: save_to = value; break;
        case FLAG_SAVE_BEST: best_to = value; break;
        case FLAG_LOG: log_to = value; break;
        case FLAG_PREDICT: predict_dir = value; break;
        case FLAG_OUT: predict_to = value; break;
        case FLAG_EPOCHS: epochs = whole(flag, value, 0); break;
        case FLAG_BATCH_SIZE: batch_size = whole(flag, value, 1); break;
        case FLAG_SEED: seed = (uint64_t)whole(flag, value, 0), seed_given = 1; break;
        case FLAG_LR: base_lr = opt.lr = number(flag, value, 0); break;
        case FLAG_MOMENTUM: opt.momentum = number(flag, value, 0), given[GIVEN_MOMENTUM] = 1; break;
        case FLAG_WEIGHT_DECAY: opt.weight_decay = number(flag, value, 0), given[GIVEN_DECAY] = 1; break;
        case FLAG_NORMALIZE: stats[input_index(value)].active = 1; break;
        case FLAG_OPTIMIZER: opt.kind = choice(flag, value, optimizer_names), given[GIVEN_OPTIMIZER] = 1; break;
        case FLAG_SCHEDULE: schedule = choice(flag, value, schedules); break;
        case FLAG_WARMUP: warmup = whole(flag, value, 0); break;
        case FLAG_DECAY: decay = number(flag, value, 0); break;
        case FLAG_STEP_EPOCHS: step_epochs = whole(flag, value, 1); break;
        case FLAG_CLIP_NORM: clip_norm = number(flag, value, 0); break;
        case FLAG_PATIENCE: patience = whole(flag, value, 0), patience_given = 1; break;
        case FLAG_THREADS: threads = whole(flag, value, 1); break;
        }
    }
    if (optind < argc)
        fail("unknown argument '%s' (see --help)", argv[optind]);
    if (check && (predict_dir || eval_only))
        fail("--gradcheck goes alone with --data (and --init-from)");
    if (predict_dir && (!init_from || !predict_to))
        fail("--predict needs --init-from CKPT and --out FILE.npy");
    if ((predict_to || argmax) && !predict_dir)
        fail("--out and --argmax go with --predict DIR");
#if !CLASS_AXIS
    if (argmax)
        fail("--argmax: output %s has no axis of classes to take the largest entry along", SG_MODEL(outputs)[0].name);
#endif
    if (predict_to && talk) {
        char folder[4096], real_folder[PATH_MAX], real_read[PATH_MAX];
        folder_of(predict_to, folder);
        const char *reads[] = {predict_dir, init_from};
        for (int r = 0; r < 2; r++)
            if (reads[r] && realpath(folder, real_folder) && realpath(reads[r], real_read) && strcmp(real_folder, real_read) == 0)
                fail("--out %s: is inside a folder this run reads (--predict or --init-from); write the predictions elsewhere", predict_to);
        struct stat there;
        size_t length = strlen(predict_to);
        if (length < 4 || strcmp(predict_to + length - 4, ".npy") != 0)
            fail("--out %s: the predictions go to a .npy file", predict_to);
        if (lstat(predict_to, &there) == 0)
            fail("--out %s: exists; predictions never replace a file: remove it or choose another path", predict_to);
        if (!can_write(predict_to))
            fail("--out %s: cannot be written", predict_to);
    }
    if ((patience_given || best_to) && !val_dir)
        fail("--patience and --save-best judge epochs on --val: give a validation folder");
#if MERGED_BATCH
    if (batch_size != SG_BATCH)
        fail("--batch-size must be %d: the model folds the batch axis into another and takes whole batches only", SG_BATCH);
#endif
#if BATCHED
    if (batch_size > SG_BATCH)
        fail("--batch-size %ld exceeds the compiled batch size %d; recompile with a larger dims.batch", batch_size, SG_BATCH);
#else
    batch_size = 1;  /* no input has a batch axis: every step sees all of the data */
#endif
    if (SG_MODEL(num_inputs) > 0 && !data_dir && !(eval_only && val_dir) && !predict_dir)
        fail("--data is required: a folder with one NAME.npy per input");
    const char *coupling = COUPLING;  /* why the loss does not split over examples, if so */
    if (world_size > 1 && coupling && !(eval_only || predict_dir || check))
        fail("this model cannot train over %d processes: %s, so the gradients of shares of a batch do not add up to the "
             "batch's; train it in one process", world_size, coupling);
    if (save_to && best_to && talk && same_path(save_to, best_to))
        fail("--save-best %s: is --save's folder too; give each its own", best_to);
    if (save_to && talk)
        check_save("--save", save_to);
    if (best_to && talk)
        check_save("--save-best", best_to);
    struct stat log_status;
    if (log_to && talk && stat(log_to, &log_status) == 0 && S_ISDIR(log_status.st_mode))
        fail("--log %s: is a folder; the log is a .csv file", log_to);
    if (log_to && talk && lstat(log_to, &log_status) == 0 && !is_our_log(log_to))
        fail("--log %s: exists and is not a log of this trainer (its first line differs); choose another file", log_to);
    if (log_to && talk && !can_write(log_to))
        fail("--log %s: cannot be written", log_to);
#ifdef _OPENMP
    if (threads > 0)
        omp_set_num_threads((int)threads);
#endif
    (void)threads;  /* without OpenMP the trainer runs on one thread */

    dataset data = {0}, val = {0}, queries = {0};
    if (data_dir)
        load_data(data_dir, &data, 0, batch_size, check);  /* the gradient check reads the first batch */
    else
        data.count = 1;
    if (val_dir)
        load_data(val_dir, &val, 0, batch_size, 0);
    if (predict_dir && talk)
        load_data(predict_dir, &queries, 1, batch_size, 1);
    if (data_dir)
        usable(data.count, batch_size);  /* refused here, where the processes agree, rather than mid-run */
    if (val_dir)
        usable(val.count, batch_size);

    /* The gradients lie in one buffer, the loss after them: what the processes sum at each step. */
    long gradient_count = 0;
    for (int k = 0; k < SG_MODEL(num_params); k++)
        gradient_count += SG_MODEL(params)[k].size;
    real *gradient_buffer = allocate((size_t)gradient_count + 1, sizeof(real));
    real *params[SG_MODEL(num_params) + 1], *grads[SG_MODEL(num_params) + 1];
    for (int k = 0; k < SG_MODEL(num_params); k++) {
        size_t size = (size_t)SG_MODEL(params)[k].size;
        params[k] = allocate(size, sizeof(real));
        grads[k] = k ? grads[k - 1] + SG_MODEL(params)[k - 1].size : gradient_buffer;
        opt.m[k] = allocate(size, sizeof(real));
        opt.v[k] = allocate(size, sizeof(real));
    }
    if (init_from)
        load_checkpoint(init_from, params, &opt, &done, &seed, seed_given, stats, !(eval_only || predict_dir), given);
    else
        SG_MODEL(init_params)(params, seed);
    agree(NULL);

    for (int k = 0; k < SG_MODEL(num_inputs); k++)
        if (stats[k].active == 1 && data_dir)
            measure(&data, k, batch_size, &stats[k]);
        else if (stats[k].active == 1)
            stats[k].active = 0;  /* nothing to measure on, nothing stored */
    void *batch[SG_MODEL(num_inputs) + 1];
    const void *inputs[SG_MODEL(num_inputs) + 1];
    for (int k = 0; k < SG_MODEL(num_inputs); k++)
        batch[k] = allocate((size_t)(SG_MODEL(inputs)[k].size * batch_size), 8);
    if (check)
        return talk ? gradcheck(&data, batch_size, stats, batch, params, seed) : 0;
    if (predict_dir) {
        if (talk)
            predict(params, &queries, batch_size, stats, batch, predict_to, argmax);
        return 0;
    }
    if (eval_only) {
        double loss, metric[METRICS + 1];
        evaluate(params, val_dir ? &val : &data, batch_size, stats, batch, &loss, metric);
        if (talk) {
            printf("eval");
            report("", loss, metric);
            printf("\n");
        }
        return 0;
    }
    if (init_from && done >= epochs) {
        if (talk)
            printf("%s has %ld epochs done, and --epochs %ld asks for no more: nothing to train\n", init_from, done, epochs);
        return 0;
    }

    long *order = allocate((size_t)data.count, sizeof *order);
    sort_item *items = allocate((size_t)data.count, sizeof *items);

    /* mpirun hands its processes a terminal whatever its own output is: no live line under it */
    const int live = isatty(STDOUT_FILENO) && !getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMI_SIZE");
    double best = 0;
    long waited = 0;
    for (long epoch = done + 1; epoch <= epochs; epoch++) {
        struct timespec started;
        clock_gettime(CLOCK_MONOTONIC, &started);
        opt.lr = scheduled(base_lr, schedule, warmup, decay, step_epochs, epoch, epochs);
        shuffle(order, items, data.count, seed, (uint64_t)epoch);
        struct timespec begun;  /* the progress line's clock starts with the first batch, after the shuffle */
        clock_gettime(CLOCK_MONOTONIC, &begun);
        double total = 0, loss = 0, metric[METRICS + 1] = {0}, norms = 0, shown = 0;
        const long used = usable(data.count, batch_size), batches = (used + batch_size - 1) / batch_size;
        /* the step taken as the gradients are computed, where it can be: in one process, plain SGD */
        const int fused = plain_sgd(&opt) && clip_norm == 0 && world_size == 1;
        long batches_done = 0;
        summing = 0;
        for (long start = 0; start < used; start += batch_size) {
            long n = used - start < batch_size ? used - start : batch_size, share;
            const long first = share_of(n, &share);  /* of this batch, this process's examples */
            gather(&data, order, start + first, share, stats, batch, inputs);
            const uint64_t step_seed = seed * 1000003u + (uint64_t)opt.step;
            if (fused ? SG_MODEL(sgd_step)(params, inputs, n, 1, step_seed, (real)opt.lr, &loss, grads) != 0
                      : share > 0 && SG_MODEL(loss_and_grads_of_share)(params, inputs, share, first, n, 1, step_seed, &loss, grads) != 0)
                fail("the model refused a batch");
            if (world_size > 1) {  /* the weighted sum of the processes' gradients, and of their losses */
                const real weight = (real)((double)share / (double)n);
                for (long i = 0; i < gradient_count; i++)
                    gradient_buffer[i] = share > 0 ? gradient_buffer[i] * weight : 0;
                gradient_buffer[gradient_count] = share > 0 ? (real)(loss * (double)share / (double)n) : 0;
                sum_over_world(gradient_buffer, gradient_count + 1, 0);
                loss = gradient_buffer[gradient_count];
            }
            if (talk && !isfinite(loss))  /* every process has the loss: the first tells */
                fail("epoch %ld: the loss is not finite (%g); the last checkpoint is kept", epoch, loss);
            if (fused)
                opt.step++;
            else {
                if (clip_norm > 0 || log_to)  /* the norm costs a pass over the gradients: only when it is used */
                    norms += clip(grads, clip_norm);
                update(&opt, params, grads);
            }
            total += loss * (double)n;
            batches_done++;
            if (live)
                progress(batches_done, batches, start + n, total / (double)(start + n), since(&begun), &shown);
        }
        if (live && shown > 0)
            printf("\r\033[K");
        const double spent = since(&started) > 1e-9 ? since(&started) : 1e-9, rate = (double)used / spent;
        const double summed = summing;  /* in the training steps, before the evaluation sums its own */
        if (val_dir)
            evaluate(params, &val, batch_size, stats, batch, &loss, metric);
        if (talk) {
            printf("epoch %3ld  train loss %.4f", epoch, total / (double)used);
            if (val_dir)
                report("val ", loss, metric);
            printf("  lr %.4g  %.0f ex/s", opt.lr, rate);
            if (world_size > 1)
                printf("  %d processes, %.0f%% summing", world_size, 100 * summed / spent);
            printf("\n");
            fflush(stdout);
        }
        if (talk && log_to && log_row(log_to, epoch, total / (double)used, val_dir != NULL, loss, metric, opt.lr, fused ? -1 : norms / (double)batches_done, rate) != 0)
            fail("%s: cannot append to the log: %s", log_to, strerror(errno));
        if (talk && save_to && save(save_to, params, &opt, epoch, seed, stats) != 0)
            fail("%s: cannot write the checkpoint: %s", save_to, strerror(errno));
        if (val_dir) {
            const double score = METRICS ? metric[0] : loss;  /* the first metric judges */
            if (better(score, best, epoch == done + 1)) {
                best = score;
                waited = 0;
                if (talk && best_to && save(best_to, params, &opt, epoch, seed, stats) != 0)
                    fail("%s: cannot write the checkpoint: %s", best_to, strerror(errno));
            } else
                waited++;
            if (patience && waited >= patience) {
                if (talk)
                    printf("early stop: no better validation score for %ld epochs (best %.4f)\n", waited, best);
                break;
            }
        }
    }
    return 0;
}

#endif
