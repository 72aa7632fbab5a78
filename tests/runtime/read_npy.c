/* The runtime's .npy reader on its own: prints the shape and the values of
 * argv[1] read as reals (argv[2] "int": as int64), or the reason it refused. */
#include <stdio.h>

typedef double real;
#define SG_MAX_RANK 4
#include "sg_npy.h"

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    array a;
    char why[512];
    const int want_int = argv[2][0] == 'i';
    if (read_npy(argv[1], want_int, &a, why, sizeof why) != 0) {
        printf("refused: %s\n", why);
        return 1;
    }
    printf("shape");
    for (int d = 0; d < a.rank; d++)
        printf(" %ld", a.dims[d]);
    printf("\n");
    for (long i = 0; i < a.count; i++)
        printf("%.17g\n", want_int ? (double)((int64_t *)a.values)[i] : ((real *)a.values)[i]);
    free(a.values);
    return 0;
}
