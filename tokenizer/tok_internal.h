/* Tokenizer internals shared by the loaders (tok_json.c, tok_gguf.c) and the engines
 * (tok_bpe.c, tok_spm.c). Everything here is private to tokenizer/. */
#ifndef LOOM_TOK_INTERNAL_H
#define LOOM_TOK_INTERNAL_H

#include "tokenizer/tokenizer.h"
#include "core/util.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

typedef struct tok_token {
    char *text;          /* vocabulary string, NUL-terminated (owned) */
    char *piece;         /* decoded bytes (owned, or == text) */
    uint32_t text_len, piece_len;
    float score;         /* SPM merge priority */
    uint8_t type;        /* loom_token_type */
    uint8_t added;       /* matched in the raw text before the model runs */
    uint8_t lstrip, rstrip; /* HF added-token flags: swallow whitespace on that side */
} tok_token;

/* string -> id, open addressing; a slot holds (hash high 32 bits << 32) | (id + 1), 0 = empty */
typedef struct tok_strmap {
    uint64_t *slots;
    size_t mask;
} tok_strmap;

/* (left id, right id) -> (rank, merged id), open addressing; key UINT64_MAX = empty */
typedef struct tok_pairmap {
    uint64_t *keys;
    uint64_t *vals;
    size_t mask, n;
} tok_pairmap;

enum { TOK_SPM = 0, TOK_BPE = 1 };
enum { TOK_STEP_SPLIT, TOK_STEP_PREFIX_SPACE };
enum { TOK_SPLIT_ISOLATED, TOK_SPLIT_REMOVED, TOK_SPLIT_MERGED_PREV, TOK_SPLIT_MERGED_NEXT };
enum { TOK_NORM_NONE, TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD };

typedef struct tok_step {
    int kind;           /* TOK_STEP_* */
    int behavior;       /* TOK_SPLIT_* */
    pcre2_code *re;
    char *src;          /* the pattern as given */
    bool jit;
} tok_step;

#define TOK_MAX_STEPS 8

struct loom_tokenizer {
    char *path;
    int kind;                 /* TOK_SPM / TOK_BPE */
    int n_vocab;
    tok_token *tok;
    tok_strmap map;
    int32_t bos, eos, eot, unk, pad;
    bool wants_bos;
    char *chat_template;

    /* SPM */
    bool add_space_prefix;
    bool spm_words;           /* no token has "▁" after another character: merge word by word */
    /* BPE */
    tok_pairmap merges;
    bool ignore_merges;
    char *pre_name;           /* GGUF tokenizer.ggml.pre equivalent, NULL when there is none */
    int normalizer;           /* TOK_NORM_* */
    int n_steps;
    tok_step steps[TOK_MAX_STEPS];

    int32_t byte_tok[256];    /* token for each byte: GPT-2 mapped char (BPE) or <0xNN> (SPM) */

    /* added tokens, indexed by first byte, longest first within a bucket */
    int32_t *added;           /* ids */
    int added_start[257];     /* bucket b holds added[added_start[b] .. added_start[b+1]) */
};

/* ---- tokenizer.c: construction helpers used by the loaders ---- */
loom_tokenizer *tok_new(const char *path, int kind, int n_vocab);
/* Set token id's text (copied) and type; fails on duplicate ids past n_vocab etc. */
int tok_set(loom_tokenizer *t, int32_t id, const char *text, size_t len, float score, int type);
/* After all tokens are set: build the string map, pieces, byte table and added-token index. */
int tok_finish(loom_tokenizer *t);
/* Compile a pre-tokenizer regex (PCRE2, UTF + UCP, JIT when available) as a split step. */
int tok_add_split(loom_tokenizer *t, const char *pattern, size_t len, int behavior);
int tok_add_prefix_space(loom_tokenizer *t);
/* The pattern with \s / \S spelled as Unicode White_Space (malloc'd); exposed for tests. */
char *tok_regex_rewrite(const char *p, size_t n, size_t *out_len);

int32_t tok_map_get(const loom_tokenizer *t, const char *s, size_t len);
int tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t merged);
bool tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *merged);
/* Add one merge "left right" (the two strings); rank = order of addition. 1 added, 0 skipped
 * (duplicate), -1 error (token missing from the vocabulary). */
int tok_add_merge(loom_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                  uint32_t rank);

/* GPT-2 byte <-> unicode map */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp); /* -1 when cp is not in the map */

/* UTF-8 helpers */
size_t tok_utf8_valid(const char *s, size_t n); /* length of the longest valid prefix */
int tok_utf8_len(uint8_t lead);                 /* bytes of the sequence a lead byte starts (1..4) */
int tok_utf8_put(char *dst, uint32_t cp);

/* Growable id vector */
typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;
int tok_ids_push(tok_ids *a, int32_t id);

/* ---- engines: encode one fragment of plain text (no added tokens in it) ---- */
typedef struct tok_scratch tok_scratch;
tok_scratch *tok_scratch_new(const loom_tokenizer *t);
void tok_scratch_free(tok_scratch *s);
/* Start the CPU-time budget of the regexes for encoding a text of len bytes. */
void tok_scratch_budget(tok_scratch *s, size_t len);
int tok_bpe_encode(const loom_tokenizer *t, tok_scratch *s, const char *text, size_t len,
                   tok_ids *out);
int tok_spm_encode(const loom_tokenizer *t, tok_scratch *s, const char *text, size_t len,
                   bool prefix_space, tok_ids *out);

/* ---- loaders ---- */
loom_tokenizer *tok_load_json(const char *json_path, const char *config_path);

#endif
