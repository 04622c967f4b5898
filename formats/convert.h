/* Writing GGUF files from other sources: HF -> GGUF conversion and random-weight synthesis.
 *
 * Both write what llama.cpp's convert_hf_to_gguf.py would for llama and qwen2: the same metadata
 * keys and types, canonical tensor names, matrices in the source dtype, 1-D tensors in f32, no
 * output.weight when the embeddings are tied, Llama-3 RoPE scaling as a rope_freqs.weight tensor,
 * and llama q/k rows permuted to the interleaved-pair RoPE order.
 */
#ifndef LOOM_CONVERT_H
#define LOOM_CONVERT_H

#include "loom.h"

struct gguf_writer;

/* Convert a HF directory (llama or qwen2) to a GGUF file. Returns 0, or -1 with an error. */
int loom_convert_hf_to_gguf(const char *hf_dir, const char *out_path);

/* Write a random-weight GGUF of a real shape: "qwen2-0.5b", "llama-1.1b", "llama-7b", or the path of a HF
 * config.json. Matrices are N(0, 0.02) in dtype (f32, f16 or bf16), norms 1, biases 0; the same
 * seed gives the same file. Tensor data is produced while the file is written (constant memory).
 * No tokenizer. Returns 0, or -1 with an error. */
int loom_synth(const char *shape_or_config, loom_dtype dtype, uint64_t seed, const char *out_path);
/* The same with the tokenizer at vocab_path (a GGUF, a tokenizer.json or a directory holding one:
 * loom_tokenizer_load) written in, padded with user-defined tokens up to the shape's vocabulary,
 * so that other engines (llama.cpp) load the file too. NULL: no tokenizer, as loom_synth. A
 * vocabulary larger than the shape's is an error. */
int loom_synth_vocab(const char *shape_or_config, loom_dtype dtype, uint64_t seed, const char *vocab_path,
                     const char *out_path);

/* ---- shared by convert.c and synth.c -------------------------------------------------------- */

typedef enum { CV_ROPE_NONE, CV_ROPE_LINEAR, CV_ROPE_LLAMA3 } cv_rope_type;

/* The hyper-parameters a llama-family GGUF carries. */
typedef struct cv_spec {
    char arch[32];  /* "llama" or "qwen2" */
    char name[128]; /* general.name */
    int64_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_ctx;
    double norm_eps, rope_theta;
    cv_rope_type rope_type;
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int64_t rope_orig_ctx;
    bool tied;
    bool qkv_bias;        /* q/k/v projections have biases */
    int64_t bos_id, eos_id; /* -1 when unknown */
} cv_spec;

/* Fill spec from a parsed HF config.json (a cJSON *); `where` names the file in messages. */
int cv_spec_from_config(cv_spec *sp, const void *config_json, const char *where);
/* The built-in shapes ("qwen2-0.5b", "llama-1.1b", "llama-7b"); -1 with an error listing them otherwise. */
int cv_spec_builtin(cv_spec *sp, const char *shape);
/* Write general.* and {arch}.* keys. file_type is llama.cpp's (0 f32, 1 f16, 32 bf16). */
int cv_write_kv(struct gguf_writer *w, const cv_spec *sp, int file_type);
/* Llama-3 RoPE frequency divisors [head_dim/2], computed as llama.cpp's converter does. */
void cv_llama3_rope_factors(const cv_spec *sp, float *out);

#endif
