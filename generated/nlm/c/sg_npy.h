/* sg_npy.h: reading .npy files (version 1.0, little-endian, C order), part of
 * symgraph's C runtime. A trainer or library includes it once, after
 *   typedef float real;  (or double) and #define SG_MAX_RANK n, the most axes an array may have.
 * Every function is static. */
#ifndef SG_NPY_H
#define SG_NPY_H

#include <sys/stat.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One array read from or written to a .npy file. */
typedef struct {
    int rank;
    long dims[SG_MAX_RANK];
    long count;    /* elements */
    int is_int;    /* values holds int64_t, else real */
    void *values;
} array;

/* The text between the quotes after `key` in a .npy header dict, or "". */
static void header_field(const char *header, const char *key, char *out, size_t size)
{
    const char *at = strstr(header, key);
    out[0] = '\0';
    if (!at)
        return;
    at += strlen(key);
    while (*at == ' ' || *at == ':' || *at == '\'')
        at++;
    size_t i = 0;
    while (at[i] && at[i] != '\'' && at[i] != ',' && i + 1 < size) {
        out[i] = at[i];
        i++;
    }
    out[i] = '\0';
    for (i = 0; out[i]; i++)  /* it may be echoed in a message: printable ASCII only */
        if (out[i] < 32 || out[i] > 126)
            out[i] = '?';
}

/* Opens path and reads its header: a's shape, and the kind ('f', 'i' or 'u') and
 * width in bytes of its values, which the file holds all of. Returns the file
 * at its first value, or NULL with why filled in. */
static FILE *open_npy(const char *path, int want_int, array *a, char *kind, long *width, char *why, size_t why_size)
{
    struct stat status;
    if (stat(path, &status) == 0 && !S_ISREG(status.st_mode)) {  /* a FIFO would block the read for good */
        snprintf(why, why_size, "not a regular file");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    unsigned char start[10];
    char header[4096], descr[16], order[16];
    if (!f) {
        snprintf(why, why_size, "cannot open: %s", strerror(errno));
        return NULL;
    }
    if (fread(start, 1, 10, f) != 10 || memcmp(start, "\x93NUMPY", 6) != 0 || start[6] != 1) {
        snprintf(why, why_size, "not a version 1 .npy file");
        fclose(f);
        return NULL;
    }
    size_t length = (size_t)start[8] | (size_t)start[9] << 8;
    if (length >= sizeof header || fread(header, 1, length, f) != length) {
        snprintf(why, why_size, "bad .npy header");
        fclose(f);
        return NULL;
    }
    header[length] = '\0';
    header_field(header, "'descr'", descr, sizeof descr);
    header_field(header, "'fortran_order'", order, sizeof order);
    if (strncmp(order, "False", 5) != 0) {
        snprintf(why, why_size, "Fortran-ordered arrays are not supported; save with np.ascontiguousarray");
        fclose(f);
        return NULL;
    }
    const char *shape = strstr(header, "'shape'");
    shape = shape ? strchr(shape, '(') : NULL;
    a->rank = 0;
    a->count = 1;
    for (const char *p = shape ? shape + 1 : ""; *p && *p != ')';) {
        char *end;
        long d = strtol(p, &end, 10);
        if (end == p) {
            p++;
            continue;
        }
        if (a->rank == SG_MAX_RANK) {
            snprintf(why, why_size, "has more axes than any input");
            fclose(f);
            return NULL;
        }
        if (d < 0 || (d > 0 && a->count > LONG_MAX / d)) {
            snprintf(why, why_size, "has an impossible shape");
            fclose(f);
            return NULL;
        }
        a->dims[a->rank++] = d;
        a->count *= d;
        p = end;
    }
    *kind = descr[1];
    *width = strtol(descr + 2, NULL, 10);
    int little = descr[0] == '<' || descr[0] == '|' || (descr[0] == '=' && *width == 1);
    if (!little || !((*kind == 'f' && (*width == 2 || *width == 4 || *width == 8)) || ((*kind == 'i' || *kind == 'u') && (*width == 1 || *width == 2 || *width == 4 || *width == 8)))) {
        snprintf(why, why_size, "unsupported dtype '%s' (use little-endian floats or integers)", descr);
        fclose(f);
        return NULL;
    }
    if (want_int && *kind == 'f') {
        snprintf(why, why_size, "must hold integers, got dtype '%s'", descr);
        fclose(f);
        return NULL;
    }
    const long start_of_data = ftell(f);
    if (start_of_data < 0 || fseek(f, 0, SEEK_END) != 0 || (ftell(f) - start_of_data) / *width < a->count ||
        fseek(f, start_of_data, SEEK_SET) != 0) {  /* checked before allocating what the header claims */
        snprintf(why, why_size, "file ends before its %ld values", a->count);
        fclose(f);
        return NULL;
    }
    a->is_int = want_int;
    return f;
}

/* count values of the given kind and width from raw into out, as int64_t
 * (want_int) or real. */
static void convert(const unsigned char *raw, char kind, long width, long count, int want_int, void *out)
{
    for (long i = 0; i < count; i++) {
        const unsigned char *v = raw + i * width;
        double x = 0;
        int64_t k = 0;
        if (kind == 'f' && width == 2) {  /* IEEE half: sign, 5 exponent bits, 10 fraction bits */
            const unsigned half = (unsigned)v[0] | (unsigned)v[1] << 8, exponent = half >> 10 & 31, fraction = half & 1023;
            x = exponent == 31 ? (fraction ? NAN : INFINITY)
                : exponent ? ldexp(1024 + fraction, (int)exponent - 25) : ldexp(fraction, -24);
            x = half >> 15 ? -x : x;
        } else if (kind == 'f' && width == 4) {
            float y;
            memcpy(&y, v, 4);
            x = y;
        } else if (kind == 'f') {
            memcpy(&x, v, 8);
        } else {
            uint64_t bits = 0;
            for (long b = 0; b < width; b++)
                bits |= (uint64_t)v[b] << (8 * b);
            if (kind == 'i' && width < 8 && bits >> (8 * width - 1))
                bits |= ~(uint64_t)0 << (8 * width);  /* sign-extend */
            k = kind == 'u' && width == 8 && bits > INT64_MAX ? INT64_MAX : (int64_t)bits;
            x = kind == 'u' ? (double)bits : (double)k;
        }
        if (want_int)
            ((int64_t *)out)[i] = k;
        else
            ((real *)out)[i] = (real)x;
    }
}

/* Reads path into a, converted to int64_t (want_int) or real, or -1 with why
 * filled in: a real that is not finite (in the model's precision) is damage.
 * The caller frees a->values. */
static int read_npy(const char *path, int want_int, array *a, char *why, size_t why_size)
{
    char kind;
    long width;
    FILE *f = open_npy(path, want_int, a, &kind, &width, why, why_size);
    if (!f)
        return -1;
    unsigned char *raw = calloc(a->count ? (size_t)a->count : 1, (size_t)width);
    if (raw && fread(raw, (size_t)width, (size_t)a->count, f) != (size_t)a->count) {
        snprintf(why, why_size, "file ends before its %ld values", a->count);
        free(raw);
        fclose(f);
        return -1;
    }
    fclose(f);
    a->values = calloc(a->count ? (size_t)a->count : 1, want_int ? sizeof(int64_t) : sizeof(real));
    if (!raw || !a->values) {
        snprintf(why, why_size, "no memory for its %ld values", a->count);
        free(raw);
        free(a->values);
        a->values = NULL;
        return -1;
    }
    convert(raw, kind, width, a->count, want_int, a->values);
    free(raw);
    for (long i = 0; !want_int && i < a->count; i++)
        if (!isfinite(((real *)a->values)[i])) {
            snprintf(why, why_size, "holds a value that is not finite");
            free(a->values);
            a->values = NULL;
            return -1;
        }
    return 0;
}

#endif  /* SG_NPY_H */
