/* GGUF v3 reader (memory-mapped) and writer.
 *
 * The reader validates everything before anyone reads it: header, every key/value and tensor
 * record within the file, tensor data offsets and sizes within the data section, alignment.
 * A file that lies about any size or offset is rejected with a message naming the file and field.
 *
 * GGUF stores dims in ggml order (ne[0] = innermost). The tensor accessors here return them in
 * PyTorch order (ne[ndim-1] innermost), like the rest of loom.
 */
#ifndef LOOM_GGUF_H
#define LOOM_GGUF_H

#include "loom.h"

typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
} gguf_type;

/* ggml tensor types loom knows (the numbering is ggml's). */
enum { GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q4_1 = 3, GGML_TYPE_Q5_0 = 6,
       GGML_TYPE_Q5_1 = 7, GGML_TYPE_Q8_0 = 8, GGML_TYPE_Q2_K = 10, GGML_TYPE_Q3_K = 11, GGML_TYPE_Q4_K = 12,
       GGML_TYPE_Q5_K = 13, GGML_TYPE_Q6_K = 14, GGML_TYPE_IQ4_NL = 20, GGML_TYPE_IQ4_XS = 23,
       GGML_TYPE_I32 = 26, GGML_TYPE_BF16 = 30 };

typedef struct gguf_ctx gguf_ctx;

/* ---- reading ---- */
gguf_ctx *gguf_open(const char *path);
void gguf_close(gguf_ctx *g);
const char *gguf_path(const gguf_ctx *g);

int gguf_n_kv(const gguf_ctx *g);
int gguf_find_key(const gguf_ctx *g, const char *key); /* -1 when absent */
const char *gguf_key(const gguf_ctx *g, int i);
gguf_type gguf_kv_type(const gguf_ctx *g, int i);
/* Scalars: any integer type / any float type / bool / string. Return false on a type mismatch. */
bool gguf_get_int(const gguf_ctx *g, int i, int64_t *out);
bool gguf_get_float(const gguf_ctx *g, int i, double *out);
bool gguf_get_bool(const gguf_ctx *g, int i, bool *out);
const char *gguf_get_str(const gguf_ctx *g, int i, size_t *len); /* not NUL-terminated in the file;
                                                                    returned copy is terminated */
/* Arrays. */
gguf_type gguf_arr_type(const gguf_ctx *g, int i);
size_t gguf_arr_n(const gguf_ctx *g, int i);
const void *gguf_arr_data(const gguf_ctx *g, int i);  /* numeric arrays: raw little-endian items */
const char *gguf_arr_str(const gguf_ctx *g, int i, size_t j, size_t *len); /* terminated copy */

int gguf_n_tensors(const gguf_ctx *g);
int gguf_find_tensor(const gguf_ctx *g, const char *name);
const char *gguf_tensor_name(const gguf_ctx *g, int i);
int gguf_tensor_ggml_type(const gguf_ctx *g, int i);
int gguf_tensor_ndim(const gguf_ctx *g, int i);
void gguf_tensor_shape(const gguf_ctx *g, int i, int64_t ne[4]); /* PyTorch order */
const void *gguf_tensor_data(const gguf_ctx *g, int i);
size_t gguf_tensor_nbytes(const gguf_ctx *g, int i);

/* File-level facts: format version (2 or 3), tensor data alignment, data section offset. */
uint32_t gguf_version(const gguf_ctx *g);
size_t gguf_alignment(const gguf_ctx *g);
size_t gguf_data_offset(const gguf_ctx *g);

/* ggml type facts: "f32", "q4_0", ... (NULL for a type loom does not know); elements per block
 * and bytes per block (0 when unknown). */
const char *gguf_ggml_type_name(int ggml_type);
int gguf_ggml_block_size(int ggml_type);
size_t gguf_ggml_type_size(int ggml_type);
/* Bytes of a tensor with ne (PyTorch order); false on overflow, unknown type, or an innermost dim
 * that is not a whole number of blocks. */
bool gguf_ggml_nbytes(int ggml_type, int ndim, const int64_t *ne, size_t *out);
/* loom dtype <-> ggml type: -1 / LOOM_DTYPE_COUNT when there is no equivalent. */
int gguf_ggml_from_dtype(loom_dtype t);
loom_dtype gguf_dtype_from_ggml(int ggml_type);

/* ---- writing ---- */
typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
/* Whether a key has been written already. */
bool gguf_w_has_key(const gguf_writer *w, const char *key);
int gguf_w_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_w_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_w_f32(gguf_writer *w, const char *key, float v);
int gguf_w_bool(gguf_writer *w, const char *key, bool v);
int gguf_w_str(gguf_writer *w, const char *key, const char *v);
int gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *v, size_t n);
int gguf_w_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n);
int gguf_w_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n);
int gguf_w_arr_bool(gguf_writer *w, const char *key, const uint8_t *v, size_t n); /* items 0 or 1 */
/* Copy every key/value of an opened file (for tools that rewrite tensors). */
int gguf_w_copy_kv(gguf_writer *w, const gguf_ctx *src);
/* Drop a key already added (to rewrite a copied one, e.g. general.file_type); 1 if it was there. */
int gguf_w_remove_kv(gguf_writer *w, const char *key);
/* Add a tensor: ne in PyTorch order; data is referenced (must stay valid until save). */
int gguf_w_tensor(gguf_writer *w, const char *name, int ggml_type, int ndim, const int64_t *ne,
                  const void *data, size_t nbytes);
/* Streaming tensors: instead of bytes held in memory, a callback produces them while the file is
 * written. It is asked for consecutive pieces, in order: bytes [offset, offset+n) of the tensor,
 * with offset and n whole blocks of the type (n <= a few MiB). Returns 0, or -1 with an error set
 * (the save then fails and leaves no file). */
typedef int (*gguf_fill_fn)(void *user, uint64_t offset, void *buf, size_t n);
int gguf_w_tensor_cb(gguf_writer *w, const char *name, int ggml_type, int ndim, const int64_t *ne,
                     size_t nbytes, gguf_fill_fn fill, void *user);
/* Scalars of the remaining GGUF types. */
int gguf_w_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_w_f64(gguf_writer *w, const char *key, double v);

/* Write to path via a temporary file and rename, so a failed write never leaves a partial file. */
int gguf_writer_save(gguf_writer *w, const char *path);

#endif
