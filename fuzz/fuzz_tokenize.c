/* fuzz_tokenize: arbitrary bytes through encode on fixed vocabularies. Byte 0 picks the
 * vocabulary (bits 0-1: stories260K's SentencePiece, LLaMA's 32000-token SentencePiece, a small
 * Qwen-style byte-level BPE, a small LLaMA-3-style one with ignore_merges) and the flags
 * (bit 2 ADD_BOS, bit 3 PARSE_SPECIAL, bit 4 SKIP_SPECIAL on decode); the rest is the text.
 * The documented rules are checked, not only memory safety:
 *   - valid UTF-8 encodes, invalid UTF-8 is an error;
 *   - every id is in range, decode succeeds;
 *   - without PARSE_SPECIAL, decode(encode(x), SKIP_SPECIAL) == x (NFC(x) for Qwen's NFC; for
 *     SentencePiece only when x holds no U+2581, the character it writes spaces as);
 *   - the stream decoder's output, concatenated, equals the pieces concatenated (SKIP_SPECIAL
 *     leaves out control and unknown tokens, as decode does). */
#include "fuzz/fuzz_util.h"
#include "tokenizer/tok_internal.h"

#include <utf8proc.h>

#ifndef FUZZ_ROOT
#define FUZZ_ROOT "."
#endif

static loom_tokenizer *vocab[4];
static bool nfc[4] = {false, false, true, false};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    /* the vocabularies are read from the source tree the target was built in, or from
     * $LOOM_FUZZ_ROOT (a copy of it: fuzz/run-pack.sh sets it to the unpacked pack) */
    static const char *rel[4] = {"/tests/fixtures/stories260K.gguf",
                                 "/tests/fixtures/tokenizer/ggml-vocab-llama-spm.gguf",
                                 "/fuzz/vocab/qwen-small", "/fuzz/vocab/llama3-small"};
    const char *root = getenv("LOOM_FUZZ_ROOT");
    if (!root || !*root) root = FUZZ_ROOT;
    for (int i = 0; i < 4; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s%s", root, rel[i]);
        vocab[i] = loom_tokenizer_load(path);
        if (!vocab[i]) {
            fprintf(stderr, "fuzz_tokenize: %s\n", loom_last_error());
            exit(1);
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    if (n < 1) return 0;
    const loom_tokenizer *t = vocab[d[0] & 3];
    unsigned flags = (d[0] & 4 ? LOOM_TOK_ADD_BOS : 0) | (d[0] & 8 ? LOOM_TOK_PARSE_SPECIAL : 0);
    unsigned dflags = d[0] & 16 ? LOOM_TOK_SKIP_SPECIAL : 0;
    const char *text = (const char *)d + 1;
    size_t len = n - 1;
    bool valid = tok_utf8_valid(text, len) == len;
    int32_t *ids = NULL;
    int k = loom_tokenizer_encode(t, text, len, flags, &ids);
    FZ_ASSERT((k >= 0) == valid, "encode %s %s UTF-8: %s", k >= 0 ? "accepted" : "refused",
              valid ? "valid" : "invalid", loom_last_error());
    if (k < 0) {
        fz_failed("encode");
        return 0;
    }
    int nv = loom_tokenizer_n_vocab(t);
    for (int i = 0; i < k; i++) FZ_ASSERT(ids[i] >= 0 && ids[i] < nv, "id %d out of range", ids[i]);

    size_t dl;
    char *dec = loom_tokenizer_decode(t, ids, (size_t)k, dflags, &dl);
    FZ_ASSERT(dec, "decode failed: %s", loom_last_error());
    /* SentencePiece writes spaces as U+2581, so a literal U+2581 in the text decodes as a space */
    bool spm = !strcmp(loom_tokenizer_kind(t), "spm");
    if (!(flags & LOOM_TOK_PARSE_SPECIAL) && !(spm && memmem(text, len, "\xe2\x96\x81", 3))) {
        char *want = (char *)text;
        size_t wl = len;
        char *norm = NULL;
        if (nfc[d[0] & 3] && len) {
            char *z = strndup(text, len);
            if (z && strlen(z) == len) { /* utf8proc stops at NUL: compare only NUL-free texts */
                norm = (char *)utf8proc_NFC((const utf8proc_uint8_t *)z);
                if (norm) want = norm, wl = strlen(norm);
            }
            free(z);
        }
        char *dec2 = loom_tokenizer_decode(t, ids, (size_t)k, LOOM_TOK_SKIP_SPECIAL, &dl);
        FZ_ASSERT(dec2, "decode failed: %s", loom_last_error());
        if (!nfc[d[0] & 3] || norm || !len)
            FZ_ASSERT(dl == wl && !memcmp(dec2, want, wl), "round trip: %zu bytes in, %zu out", wl, dl);
        free(dec2);
        free(norm);
    }
    free(dec);

    /* stream == pieces, byte for byte */
    loom_tokenizer_stream *st = loom_tokenizer_stream_new(t, dflags);
    FZ_ASSERT(st, "stream_new: %s", loom_last_error());
    size_t cap = 16, sl = 0, pl = 0;
    for (int i = 0; i < k; i++) {
        size_t l;
        FZ_ASSERT(loom_tokenizer_piece(t, ids[i], &l), "no piece for id %d", ids[i]);
        cap += l;
    }
    char *sbuf = malloc(cap), *pbuf = malloc(cap);
    for (int i = 0; i < k; i++) {
        size_t l;
        const char *p = loom_tokenizer_stream_put(st, ids[i], &l);
        FZ_ASSERT(p && sl + l <= cap, "stream_put");
        memcpy(sbuf + sl, p, l), sl += l;
        loom_token_type ty = loom_tokenizer_token_type(t, ids[i]);
        if ((dflags & LOOM_TOK_SKIP_SPECIAL) && (ty == LOOM_TOKEN_CONTROL || ty == LOOM_TOKEN_UNKNOWN)) continue;
        p = loom_tokenizer_piece(t, ids[i], &l);
        FZ_ASSERT(p && pl + l <= cap, "piece");
        memcpy(pbuf + pl, p, l), pl += l;
    }
    size_t l;
    const char *p = loom_tokenizer_stream_finish(st, &l);
    FZ_ASSERT(p && sl + l <= cap, "stream_finish");
    memcpy(sbuf + sl, p, l), sl += l;
    FZ_ASSERT(sl == pl && !memcmp(sbuf, pbuf, sl), "stream gave %zu bytes, pieces %zu", sl, pl);
    loom_tokenizer_stream_free(st);
    free(sbuf), free(pbuf), free(ids);
    return 0;
}
