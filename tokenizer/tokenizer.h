/* Tokenizers: text <-> token ids for the models loom runs. The public part (loading, encoding,
 * decoding, streaming, special tokens, end of generation) is declared in include/loom.h; this
 * header adds what loom's own code needs (GGUF import/export, token types).
 *
 * Two kinds, loaded from either a GGUF file's tokenizer.ggml.* metadata or a HuggingFace
 * tokenizer.json:
 *   - byte-level BPE (GPT-2 style: Qwen2/Qwen3, LLaMA 3): regex pre-tokenizer, ranked merges;
 *   - SentencePiece-style BPE (LLaMA 1/2): score-ordered merges, "▁" for spaces, a dummy prefix
 *     space and <0xNN> byte fallback.
 *
 * A loaded tokenizer is immutable: encode/decode/piece may be called from several threads at once.
 * Functions that fail return NULL / -1 and leave a one-line message in loom_last_error().
 */
#ifndef LOOM_TOKENIZER_H
#define LOOM_TOKENIZER_H

#include "loom.h"

#ifdef __cplusplus
extern "C" {
#endif

struct gguf_ctx;

/* Token types, numbered as GGUF's tokenizer.ggml.token_type (and llama.cpp). HF tokenizer.json
 * added tokens become CONTROL (special: true) or USER_DEFINED (special: false). */
typedef enum loom_token_type {
    LOOM_TOKEN_UNDEFINED = 0,
    LOOM_TOKEN_NORMAL = 1,
    LOOM_TOKEN_UNKNOWN = 2,
    LOOM_TOKEN_CONTROL = 3,
    LOOM_TOKEN_USER_DEFINED = 4,
    LOOM_TOKEN_UNUSED = 5,
    LOOM_TOKEN_BYTE = 6,
} loom_token_type;

/* ---- loading ---------------------------------------------------------------------------------- */
loom_tokenizer *loom_tokenizer_from_gguf(const struct gguf_ctx *g);
loom_tokenizer *loom_tokenizer_from_json_file(const char *tokenizer_json_path);

/* ---- export ----------------------------------------------------------------------------------- */
struct gguf_writer;
/* Write the tokenizer as GGUF tokenizer.ggml.* metadata (model, pre, tokens, scores, token_type,
 * merges, the special ids, add_bos_token, chat template), so that a converted model carries it.
 * With special_ids false, bos/eos ids are left to the caller (who may have written them already).
 * _pad with pad_to > n_vocab appends user-defined tokens "<|pad_0|>", "<|pad_1|>", ... (score 0) up to pad_to
 * tokens, for a model whose embedding has more rows than the vocabulary (loom synth --vocab).
 * Fails for a tokenizer.json pipeline that has no GGUF pre-tokenizer name. */
int loom_tokenizer_to_gguf(const loom_tokenizer *t, struct gguf_writer *w, bool special_ids);
int loom_tokenizer_to_gguf_pad(const loom_tokenizer *t, struct gguf_writer *w, bool special_ids, int pad_to);

/* ---- facts ------------------------------------------------------------------------------------ */
loom_token_type loom_tokenizer_token_type(const loom_tokenizer *t, int32_t id);
/* "spm" or "bpe" (byte-level). */
const char *loom_tokenizer_kind(const loom_tokenizer *t);
/* The file it came from. */
const char *loom_tokenizer_path(const loom_tokenizer *t);

#ifdef __cplusplus
}
#endif
#endif
