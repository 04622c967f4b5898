/* Writing GGUF files from other sources: HF -> GGUF conversion and random-weight synthesis.
 *
 * Both write what llama.cpp's convert_hf_to_gguf.py would for the family: the keys its descriptor
 * (models/model.h, loom_arch) and loom_arch_write_kv say, GGUF tensor names from its name table,
 * matrices in the source dtype, 1-D tensors in f32, no output.weight when the embeddings are tied,
 * Llama-3 RoPE scaling as a rope_freqs.weight tensor, q/k rows permuted to the interleaved-pair
 * RoPE order where the family's llama.cpp converter does (llama), and 1 + w norms as w + 1 (Gemma).
 */
#ifndef LOOM_CONVERT_H
#define LOOM_CONVERT_H

#include "loom.h"

#include <stdbool.h>
#include <stdio.h>

struct gguf_writer;

/* Convert a HF directory to a GGUF file. Returns 0, or -1 with an error. */
int loom_convert_hf_to_gguf(const char *hf_dir, const char *out_path);

/* loom quantize: a GGUF or a HF directory (converted to a temporary GGUF first) rewritten with
 * block-quantised matrices; the types, the mix and the errors are formats/quantize.h's
 * loom_quantize_gguf. loom_quantize is loom_quantize_ex with pure = false (the preset's mix) and one
 * thread per online CPU. */
int loom_quantize_ex(const char *in, const char *out, const char *type, bool pure, int n_threads, FILE *log);
int loom_quantize(const char *in, const char *out, const char *type, FILE *log);

/* Write a random-weight GGUF of a real shape: "qwen2-0.5b", "llama-1.1b", "llama-7b", or the path of a HF
 * config.json (a family with the plain decoder's tensors). Matrices are N(0, 0.02) in dtype (f32,
 * f16 or bf16), norms 1, biases 0; the same seed gives the same file. Tensor data is produced while
 * the file is written (constant memory). No tokenizer. Returns 0, or -1 with an error. */
int loom_synth(const char *shape_or_config, loom_dtype dtype, uint64_t seed, const char *out_path);
/* The same with the tokenizer at vocab_path (a GGUF, a tokenizer.json or a directory holding one:
 * loom_tokenizer_load) written in, padded with user-defined tokens up to the shape's vocabulary,
 * so that other engines (llama.cpp) load the file too. NULL: no tokenizer, as loom_synth. A
 * vocabulary larger than the shape's is an error. */
int loom_synth_vocab(const char *shape_or_config, loom_dtype dtype, uint64_t seed, const char *vocab_path,
                     const char *out_path);

/* A built-in shape's family and hyper-parameters; -1 with an error listing them otherwise. */
struct loom_arch;
struct loom_hparams;
int loom_synth_shape(const char *shape, const struct loom_arch **arch, struct loom_hparams *hp);

/* attention.key_length and value_length, for families whose llama.cpp converter writes them
 * always (loom_arch_write_kv writes them only when head_dim is not hidden/heads). */
struct loom_hparams;
int loom_arch_write_kv_lengths(struct gguf_writer *w, const char *arch, const struct loom_hparams *hp);
/* "{arch}.suffix" keys for a family's write_kv. */
int loom_gguf_w_u32(struct gguf_writer *w, const char *arch, const char *suffix, int64_t v);
int loom_gguf_w_f32(struct gguf_writer *w, const char *arch, const char *suffix, double v);

#endif
