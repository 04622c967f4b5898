/* safetensors reader (memory-mapped).
 *
 * Layout: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets},
 * "__metadata__": {str: str}}, then the data section; data_offsets are [begin, end) within it.
 *
 * st_open validates the whole header before returning: the length against the file size, the JSON,
 * every entry's dtype (F32, F16, BF16, I32; any other dtype is an error naming it), shape (at most
 * ST_MAX_DIMS non-negative dims), offsets within the data section and end - begin equal to
 * product(shape) * dtype size, and no duplicate names. Tensors keep the header's order.
 * Data is mapped; a tensor whose bytes are not aligned for its dtype is copied (rare: writers pad
 * the header to 8 bytes).
 */
#ifndef LOOM_SAFETENSORS_H
#define LOOM_SAFETENSORS_H

#include "loom.h"

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    const char *name;
    loom_dtype dtype;
    int ndim;                    /* 0 for a scalar */
    int64_t shape[ST_MAX_DIMS];  /* row-major, as written */
    const void *data;            /* aligned for dtype */
    size_t nbytes;
} st_tensor;

typedef struct st_file st_file;

/* Open and validate; NULL with an error naming the file and the problem. */
st_file *st_open(const char *path);
void st_close(st_file *f);
const char *st_path(const st_file *f);

int st_n_tensors(const st_file *f);
const st_tensor *st_tensor_at(const st_file *f, int i);
/* By name; NULL (no error set) when absent. */
const st_tensor *st_find(const st_file *f, const char *name);
/* A "__metadata__" string value; NULL when absent. */
const char *st_metadata(const st_file *f, const char *key);

/* Elements of a tensor (product of its shape; 1 for a scalar). */
size_t st_numel(const st_tensor *t);

#endif
