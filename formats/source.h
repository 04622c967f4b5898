/* A checkpoint opened for reading: a HuggingFace directory or a GGUF file, behind one interface.
 *
 * Tensors are exposed under canonical GGUF names (token_embd.weight, blk.N.attn_q.weight, ...)
 * whichever format they came from; HF names that have no GGUF equivalent keep their HF name.
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

loom_source_kind loom_source_get_kind(const loom_source *s);
const char *loom_source_path(const loom_source *s);
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

/* HF <-> GGUF tensor name mapping for llama-family checkpoints ("model.layers.3.self_attn.q_proj.weight"
 * <-> "blk.3.attn_q.weight"). Return false when the name has no mapping. */
bool loom_name_hf_to_gguf(const char *hf, char *out, size_t n);
bool loom_name_gguf_to_hf(const char *gguf, char *out, size_t n);

/* Read a JSON file holding an object: a cJSON * (free with cJSON_Delete), or NULL with an error
 * naming the file (missing, too large, not JSON, not an object). */
void *loom_json_read(const char *path);
/* What a JSON value is, for error messages ("a bool", "a list", ..., "null"): a const cJSON *.
 * Shared by the hyper-parameter lookups here and formats/convert.c. */
const char *loom_json_kind(const void *v);

#endif
