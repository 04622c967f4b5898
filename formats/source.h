/* A checkpoint opened for reading: a HuggingFace directory or a GGUF file, behind one interface.
 *
 * Tensors are exposed under the names in the file; the model layer renames HF tensors to the
 * canonical GGUF names (token_embd.weight, blk.N.attn_q.weight, ...) with loom_source_rename.
 * Matrix data is memory-mapped, never copied. 1-D tensors (norm weights, biases) are converted to
 * f32 copies at open time so kernels only see f32 vectors.
 *
 * Hyper-parameters are read by key: the HF key from config.json (a dotted path such as
 * "rope_parameters.rope_theta" walks nested objects) or the GGUF metadata key, where "{arch}" is
 * replaced by general.architecture.
 */
#ifndef LOOM_SOURCE_H
#define LOOM_SOURCE_H

#include "graph/graph.h" /* loom_weight: what a source fills for each tensor (kind LOOM_WEIGHT_FILE) */

typedef struct loom_source loom_source;

typedef enum { LOOM_SOURCE_HF, LOOM_SOURCE_GGUF } loom_source_kind;

/* Open a HF directory (config.json + model.safetensors or model.safetensors.index.json + shards)
 * or a .gguf file. On failure returns NULL and the error names the file and the problem. */
loom_source *loom_source_open(const char *path);
void loom_source_close(loom_source *s);
/* A HF config.json alone, with no tensors (synthesising weights for a config). */
loom_source *loom_source_open_config(const char *config_path);

loom_source_kind loom_source_get_kind(const loom_source *s);
const char *loom_source_path(const loom_source *s);
/* Where hyper-parameters come from, for messages: HF config.json's path, else the GGUF's. */
const char *loom_source_config_path(const loom_source *s);
/* Architecture name: HF config "model_type" (e.g. "llama", "qwen2"); GGUF general.architecture. */
const char *loom_source_arch(const loom_source *s);
/* HF "architectures" list (NULL-terminated, may be empty); NULL for GGUF. */
const char *const *loom_source_hf_architectures(const loom_source *s);

int loom_source_n_tensors(const loom_source *s);
const loom_weight *loom_source_tensor(const loom_source *s, int i);
/* Find by canonical name; NULL (no error set) when absent. */
const loom_weight *loom_source_find(const loom_source *s, const char *name);

/* Hyper-parameter lookups. Return 1 when found, 0 when absent (or JSON null), -1 with an error
 * when present with the wrong type. Either key may be NULL. */
int loom_source_get_int(const loom_source *s, const char *hf_key, const char *gguf_key, int64_t *out);
int loom_source_get_float(const loom_source *s, const char *hf_key, const char *gguf_key, double *out);
int loom_source_get_bool(const loom_source *s, const char *hf_key, const char *gguf_key, bool *out);
int loom_source_get_str(const loom_source *s, const char *hf_key, const char *gguf_key, char *buf,
                        size_t n);

/* Raw access for tools (convert, the tokenizer): the parsed config.json (a cJSON *) or the GGUF
 * reader (a gguf_ctx *, formats/gguf.h); NULL when the source is of the other kind. */
const void *loom_source_hf_config(const loom_source *s);
const struct gguf_ctx *loom_source_gguf(const loom_source *s);

/* Tensor names are data the model files own (models/names.c): a HF directory opens with its HF
 * names, and the model layer renames them. fn writes the new name of `name` into out and returns
 * 1, returns 0 to keep it, or -1 with an error. Two tensors ending with one name is an error. */
typedef int (*loom_source_name_fn)(void *user, const char *name, char *out, size_t n);
int loom_source_rename(loom_source *s, loom_source_name_fn fn, void *user);
/* Split a matrix by rows into n_parts views of the mapped data, no copy (a fused qkv or gate_up
 * projection). The first part keeps the tensor's id; rows must add up to its row count. */
int loom_source_split_rows(loom_source *s, const char *name, int n_parts, const char *const *names,
                           const int64_t *rows);
/* Stack n same-shaped tensors into one owned copy named `name` with a new leading dimension n
 * (mixture-of-experts weights stored one tensor per expert, as GGUF stores them stacked). The
 * parts leave the table; tensor ids are renumbered, so call it before anything holds one. */
int loom_source_stack(loom_source *s, const char *name, int n, const char *const *names);
/* Add v to every element of a vector (its owned f32 copy): Gemma's 1 + w norms. */
int loom_source_vector_add(loom_source *s, const char *name, float v);

/* Read a JSON file holding an object: a cJSON * (free with cJSON_Delete), or NULL with an error
 * naming the file (missing, too large, not JSON, not an object). */
void *loom_json_read(const char *path);
/* What a JSON value is, for error messages ("a bool", "a list", ..., "null"): a const cJSON *.
 * Shared by the hyper-parameter lookups here and models/. */
const char *loom_json_kind(const void *v);

#endif
