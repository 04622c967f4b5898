/* Tokenizer test vectors from llama.cpp's models/ folder (see tests/fixtures/tokenizer/README.md):
 * every case must encode to exactly the reference ids and decode back to its text. */
#include "tests/unit/check.h"
#include "models/convert.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[sz] = 0;
    *n = (size_t)sz;
    return b;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* Run one .inp/.out pair against tokenizer t. */
static void run_vectors(const loom_tokenizer *t, const char *inp_path, const char *out_path,
                        bool nfc) {
    size_t ni, no;
    char *inp = slurp(inp_path, &ni), *out = slurp(out_path, &no);
    CHECK(inp && out, "cannot read %s / %s", inp_path, out_path);
    if (!inp || !out) return;

    /* cases: each one is followed by the separator line (the file ends with one) */
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sl = sizeof sep - 1;
    const char *cases[256];
    size_t lens[256], nc = 0;
    bool terminated = true;
    for (const char *p = inp, *end = inp + ni; p < end && nc < 256;) {
        const char *q = memmem(p, (size_t)(end - p), sep, sl);
        cases[nc] = p;
        lens[nc++] = q ? (size_t)(q - p) : (size_t)(end - p);
        if (!q) {
            terminated = false;
            break;
        }
        p = q + sl;
    }

    char *line = out;
    size_t n_ok = 0, n_lines = 0;
    for (size_t c = 0; c < nc && line < out + no; c++, n_lines++) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        int32_t want[512];
        size_t nw = 0;
        for (char *s = line, *e; nw < 512; s = e) {
            long v = strtol(s, &e, 10);
            if (e == s) break;
            want[nw++] = (int32_t)v;
        }
        line = nl ? nl + 1 : out + no;

        int32_t *got = NULL;
        int ng = loom_tokenizer_encode(t, cases[c], lens[c], 0, &got);
        bool same = ng == (int)nw && (nw == 0 || !memcmp(got, want, nw * sizeof *got));
        CHECK(same, "%s case %zu '%.*s': %d ids, want %zu (%s)", inp_path, c, (int)lens[c],
              cases[c], ng, nw, ng < 0 ? loom_last_error() : "");
        if (!same && ng >= 0) {
            print_ids("want", want, nw);
            print_ids("got ", got, (size_t)ng);
        }
        n_ok += same;

        /* round trip: the text back (NFC of it when the tokenizer normalises) */
        if (ng >= 0) {
            size_t dl;
            char *dec = loom_tokenizer_decode(t, got, (size_t)ng, 0, &dl);
            const char *exp = cases[c];
            size_t el = lens[c];
            utf8proc_uint8_t *norm = NULL;
            if (nfc) {
                utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)cases[c],
                                                  (utf8proc_ssize_t)lens[c], &norm,
                                                  UTF8PROC_STABLE | UTF8PROC_COMPOSE);
                if (r >= 0) {
                    exp = (const char *)norm;
                    el = (size_t)r;
                }
            }
            CHECK(dec && dl == el && !memcmp(dec, exp, el), "%s case %zu: decode gives '%.*s'",
                  inp_path, c, dec ? (int)dl : 0, dec ? dec : "");
            free(dec);
            free(norm);
        }
        free(got);
    }
    CHECK(nc == n_lines && terminated && nc >= 40, "%s: %zu cases for %zu reference lines",
          inp_path, nc, n_lines);
    printf("%s: %zu/%zu cases identical\n", inp_path, n_ok, n_lines);
    free(inp);
    free(out);
}

int main(void) {
    const char *fx = getenv("LOOM_FIXTURES"), *data = getenv("LOOM_TOK_DATA");
    if (!fx || !data) {
        fprintf(stderr, "LOOM_FIXTURES and LOOM_TOK_DATA must be set (ctest sets them)\n");
        return 1;
    }
    char vocab[1024], inp[1024], out[1024];
    static const struct {
        const char *vectors, *vocab;
        bool in_data, nfc;
        int n_vocab;
        const char *model_fixture; /* a checkpoint of the same family, for the convert round trip */
    } suites[] = {
        {"ggml-vocab-llama-spm.gguf", "tokenizer/ggml-vocab-llama-spm.gguf", false, false, 32000, NULL},
        {"ggml-vocab-qwen2.gguf", "qwen3", true, true, 151669, "qwen2-tiny"},
        {"ggml-vocab-llama-bpe.gguf", "llama3", true, false, 128256, "llama-tiny"},
    };
    for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++) {
        snprintf(vocab, sizeof vocab, "%s/%s", suites[s].in_data ? data : fx, suites[s].vocab);
        snprintf(inp, sizeof inp, "%s/tokenizer/%s.inp", fx, suites[s].vectors);
        snprintf(out, sizeof out, "%s/tokenizer/%s.out", fx, suites[s].vectors);
        loom_tokenizer *t = loom_tokenizer_load(vocab);
        CHECK(t, "load %s: %s", vocab, loom_last_error());
        if (!t) continue;
        CHECK(loom_tokenizer_n_vocab(t) == suites[s].n_vocab, "%s: n_vocab %d", vocab,
              loom_tokenizer_n_vocab(t));
        run_vectors(t, inp, out, suites[s].nfc);

        /* the same vocabulary carried into GGUF metadata by `loom convert` (a tiny checkpoint
         * of the matching family with this tokenizer.json beside it) and read back through the
         * GGUF loader must tokenize identically */
        if (suites[s].in_data) {
            char dir[] = "/tmp/loom_tok_convert_XXXXXX", gg[1200], src[1200], dst[1200];
            CHECK(mkdtemp(dir) != NULL, "mkdtemp");
            static const char *const files[] = {"config.json", "model.safetensors"};
            for (int k = 0; k < 2; k++) {
                snprintf(src, sizeof src, "%s/%s/%s", fx, suites[s].model_fixture, files[k]);
                snprintf(dst, sizeof dst, "%s/%s", dir, files[k]);
                CHECK(symlink(src, dst) == 0, "symlink %s", dst);
            }
            static const char *const tfiles[] = {"tokenizer.json", "tokenizer_config.json"};
            for (int k = 0; k < 2; k++) {
                snprintf(src, sizeof src, "%s/%s", vocab, tfiles[k]);
                snprintf(dst, sizeof dst, "%s/%s", dir, tfiles[k]);
                CHECK(symlink(src, dst) == 0, "symlink %s", dst);
            }
            snprintf(gg, sizeof gg, "%s/converted.gguf", dir);
            int rc = loom_convert_hf_to_gguf(dir, gg);
            CHECK(rc == 0, "%s: convert: %s", dir, loom_last_error());
            loom_tokenizer *g = rc ? NULL : loom_tokenizer_load(gg);
            CHECK(g, "%s: reload: %s", gg, loom_last_error());
            if (g) {
                /* bos/eos come from the checkpoint's own config, so only the vocabulary and the
                 * template must match */
                CHECK(loom_tokenizer_n_vocab(g) == suites[s].n_vocab &&
                          !strcmp(loom_tokenizer_chat_template(g), loom_tokenizer_chat_template(t)),
                      "%s: GGUF copy differs in its facts", vocab);
                run_vectors(g, inp, out, suites[s].nfc);
                loom_tokenizer_free(g);
            }
            unlink(gg);
            for (int k = 0; k < 2; k++) {
                snprintf(dst, sizeof dst, "%s/%s", dir, files[k]);
                unlink(dst);
                snprintf(dst, sizeof dst, "%s/%s", dir, tfiles[k]);
                unlink(dst);
            }
            rmdir(dir);
        }
        loom_tokenizer_free(t);
    }

    /* the bundled model's 512-token SentencePiece vocabulary */
    snprintf(vocab, sizeof vocab, "%s/stories260K.gguf", fx);
    loom_tokenizer *t = loom_tokenizer_load(vocab);
    CHECK(t, "load %s: %s", vocab, loom_last_error());
    if (t) {
        static const char text[] = "Once upon a time";
        static const int32_t want[] = {1, 403, 407, 261, 378};
        int32_t *ids = NULL;
        int n = loom_tokenizer_encode(t, text, strlen(text), LOOM_TOK_ADD_BOS, &ids);
        CHECK(n == 5 && !memcmp(ids, want, sizeof want), "stories260K: %d ids", n);
        if (n >= 0) print_ids("stories260K 'Once upon a time'", ids, (size_t)n);
        CHECK(loom_tokenizer_n_vocab(t) == 512, "n_vocab %d", loom_tokenizer_n_vocab(t));
        CHECK(loom_tokenizer_bos(t) == 1 && loom_tokenizer_wants_bos(t), "bos %d",
              loom_tokenizer_bos(t));
        size_t dl;
        char *dec = n > 0 ? loom_tokenizer_decode(t, ids, (size_t)n, LOOM_TOK_SKIP_SPECIAL, &dl) : NULL;
        CHECK(dec && dl == strlen(text) && !memcmp(dec, text, dl), "stories260K decode '%s'",
              dec ? dec : "");
        free(dec);
        free(ids);
        loom_tokenizer_free(t);
    }
    CHECK_DONE();
}
