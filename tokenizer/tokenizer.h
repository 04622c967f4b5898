/* Tokenizers: text <-> token ids for the models loom runs.
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

struct gguf_ctx;
typedef struct loom_tokenizer loom_tokenizer;

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
/* path: a .gguf file (vocabulary-only files are fine), a tokenizer.json file, or a directory that
 * holds tokenizer.json (tokenizer_config.json beside it is read when present, for BOS/EOS, add_bos
 * and the chat template). A directory without tokenizer.json is an error: the caller decides
 * whether a model without a tokenizer is acceptable. */
loom_tokenizer *loom_tokenizer_load(const char *path);
loom_tokenizer *loom_tokenizer_from_gguf(const struct gguf_ctx *g);
loom_tokenizer *loom_tokenizer_from_json_file(const char *tokenizer_json_path);
void loom_tokenizer_free(loom_tokenizer *t);

/* ---- encoding --------------------------------------------------------------------------------- */
enum {
    LOOM_TOK_ADD_BOS = 1u << 0,       /* prepend the BOS token (nothing when the vocabulary has none) */
    LOOM_TOK_PARSE_SPECIAL = 1u << 1, /* match control tokens ("<|im_start|>", "<s>") in the text;
                                         without it they are tokenized as plain text. User-defined
                                         added tokens are always matched, as llama.cpp does. */
    LOOM_TOK_SKIP_SPECIAL = 1u << 2,  /* decode/stream: leave control tokens out of the text */
};

/* Encode len bytes of UTF-8 text. On success returns the number of tokens and stores a malloc'd
 * array in *ids (free() it; non-NULL even for 0 tokens). Invalid UTF-8 is an error (-1). */
int loom_tokenizer_encode(const loom_tokenizer *t, const char *text, size_t len, unsigned flags,
                          int32_t **ids);

/* ---- decoding --------------------------------------------------------------------------------- */
/* Decode n ids to bytes: a malloc'd buffer, NUL-terminated for convenience, its length (which
 * counts no terminator; the text may contain NULs) in *len. Byte-exact: byte-fallback tokens that
 * form invalid UTF-8 come back as those bytes. For SentencePiece vocabularies the dummy prefix
 * space of the first token (after BOS) is removed, so decode(encode(x)) == x.
 * Flags: LOOM_TOK_SKIP_SPECIAL. NULL on an id out of range. */
char *loom_tokenizer_decode(const loom_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                            size_t *len);

/* The bytes one token stands for (" Hello" for "ĠHello" or "▁Hello", "\n" for <0x0A>), NOT
 * terminated, valid as long as the tokenizer; NULL when id is out of range. May be a partial
 * UTF-8 sequence. */
const char *loom_tokenizer_piece(const loom_tokenizer *t, int32_t id, size_t *len);
/* The token's string in the vocabulary ("ĠHello", "▁Hello", "<0x0A>"), NUL-terminated; *len
 * (when len is not NULL) is its length in bytes, which is what counts: a vocabulary string may
 * hold NUL bytes (GGUF and JSON strings carry their length). */
const char *loom_tokenizer_token_text(const loom_tokenizer *t, int32_t id, size_t *len);
/* The id whose vocabulary string is exactly text[0..len), or -1. */
int32_t loom_tokenizer_find(const loom_tokenizer *t, const char *text, size_t len);

/* Streaming decode for generated text: feed ids one at a time, get back only complete UTF-8
 * characters; an incomplete trailing sequence is held until later bytes complete it (bytes that
 * can never become valid UTF-8 are passed through as they are). The stream is a continuation, so
 * no dummy-prefix space is removed. Concatenating every put() and the final finish() gives the
 * pieces' bytes exactly. */
typedef struct loom_tokenizer_stream loom_tokenizer_stream;
loom_tokenizer_stream *loom_tokenizer_stream_new(const loom_tokenizer *t, unsigned flags);
/* Returns the bytes now ready (possibly 0 of them), valid until the next call on the stream;
 * NULL with an error for an id out of range. */
const char *loom_tokenizer_stream_put(loom_tokenizer_stream *s, int32_t id, size_t *len);
/* End of stream: returns whatever is still held (an incomplete sequence, byte-exact) and resets. */
const char *loom_tokenizer_stream_finish(loom_tokenizer_stream *s, size_t *len);
void loom_tokenizer_stream_free(loom_tokenizer_stream *s);

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
int loom_tokenizer_n_vocab(const loom_tokenizer *t);
int32_t loom_tokenizer_bos(const loom_tokenizer *t); /* -1 when none */
int32_t loom_tokenizer_eos(const loom_tokenizer *t); /* -1 when none */
/* Whether the model expects BOS at the start of a prompt (GGUF tokenizer.ggml.add_bos_token,
 * tokenizer_config.json add_bos_token or the post-processor template, else the kind's default). */
bool loom_tokenizer_wants_bos(const loom_tokenizer *t);
loom_token_type loom_tokenizer_token_type(const loom_tokenizer *t, int32_t id);
/* Control tokens: GGUF type 3, HF added tokens marked "special". */
bool loom_tokenizer_is_special(const loom_tokenizer *t, int32_t id);
/* End of generation: EOS, EOT and the usual end-of-turn tokens (<|im_end|>, <|eot_id|>, ...). */
bool loom_tokenizer_is_eog(const loom_tokenizer *t, int32_t id);
/* The Jinja chat template the file carries (GGUF tokenizer.chat_template, tokenizer_config.json
 * chat_template), or NULL. */
const char *loom_tokenizer_chat_template(const loom_tokenizer *t);
/* "spm" or "bpe" (byte-level). */
const char *loom_tokenizer_kind(const loom_tokenizer *t);
/* The file it came from. */
const char *loom_tokenizer_path(const loom_tokenizer *t);

#endif
