/* Tokenizer API behaviour: round trips on random text, invalid UTF-8, the streaming decoder,
 * special tokens, queries, pre-tokenizer behaviours on synthetic vocabularies, and every loader
 * error path we can provoke. */
#include "tests/unit/check.h"
#include "formats/gguf.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

static uint64_t rng = 0x1234567887654321ull;
static uint32_t rnd(uint32_t n) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)((rng >> 11) % n);
}

/* A random valid UTF-8 string drawn from character classes that stress tokenizers. */
static size_t random_text(char *buf, size_t max_chars) {
    size_t n = 0, chars = rnd((uint32_t)max_chars + 1);
    for (size_t i = 0; i < chars; i++) {
        uint32_t cp;
        switch (rnd(12)) {
        case 0: case 1: case 2: cp = 'a' + rnd(26); break;
        case 3: cp = " \t\n\r  "[rnd(6)]; break;
        case 4: cp = '0' + rnd(10); break;
        case 5: cp = (uint32_t)"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"[rnd(32)]; break;
        case 6: cp = 0xa0 + rnd(0x250); break;             /* Latin-1 .. Latin Extended */
        case 7: cp = rnd(2) ? 0x301 : 0x300 + rnd(0x70); break; /* combining marks */
        case 8: cp = 0x4e00 + rnd(0x5000); break;          /* CJK */
        case 9: cp = 0x1f300 + rnd(0x300); break;          /* emoji */
        case 10: cp = rnd(32); break;                       /* controls, NUL included */
        default: /* anything valid */
            do cp = rnd(0x110000); while (cp >= 0xd800 && cp <= 0xdfff);
        }
        n += (size_t)tok_utf8_put(buf + n, cp);
    }
    return n;
}

static bool valid_utf8(const char *s, size_t n) { return tok_utf8_valid(s, n) == n; }

static char fx[1024], data[1024];

static loom_tokenizer *load(const char *dir, const char *rel) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    loom_tokenizer *t = loom_tokenizer_load(p);
    CHECK(t, "load %s: %s", p, loom_last_error());
    return t;
}

static int enc(const loom_tokenizer *t, const char *s, unsigned flags, int32_t **ids) {
    return loom_tokenizer_encode(t, s, strlen(s), flags, ids);
}

static bool has_id(const int32_t *ids, int n, int32_t id) {
    for (int i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

/* decode(encode(x)) == x (NFC(x) when nfc), and the stream gives the same bytes in valid pieces */
static void round_trips(const loom_tokenizer *t, bool nfc, bool stream_equals_decode) {
    char text[1024];
    int bad = 0, bad_stream = 0;
    for (int i = 0; i < 300; i++) {
        size_t n = random_text(text, 60);
        int32_t *ids = NULL;
        int k = loom_tokenizer_encode(t, text, n, 0, &ids);
        CHECK(k >= 0, "%s: encode random text %d: %s", loom_tokenizer_path(t), i, loom_last_error());
        if (k < 0) continue;
        size_t dl;
        char *dec = loom_tokenizer_decode(t, ids, (size_t)k, 0, &dl);
        const char *exp = text;
        size_t el = n;
        utf8proc_uint8_t *norm = NULL;
        if (nfc) {
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)n,
                                              &norm, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            exp = (const char *)norm;
            el = r < 0 ? 0 : (size_t)r;
        }
        if (!dec || dl != el || memcmp(dec, exp, el)) {
            if (bad++ < 3) fprintf(stderr, "round trip %d differs (%zu vs %zu bytes)\n", i, dl, el);
        }
        /* streaming: every chunk valid UTF-8, all chunks together = the pieces */
        loom_tokenizer_stream *s = loom_tokenizer_stream_new(t, 0);
        char all[4096];
        size_t al = 0;
        bool chunks_ok = true;
        for (int j = 0; j < k; j++) {
            size_t l;
            const char *c = loom_tokenizer_stream_put(s, ids[j], &l);
            chunks_ok &= c && valid_utf8(c, l);
            if (c && al + l < sizeof all) memcpy(all + al, c, l), al += l;
        }
        size_t l;
        const char *c = loom_tokenizer_stream_finish(s, &l);
        chunks_ok &= c && l == 0; /* the text was valid, so nothing may be left over */
        loom_tokenizer_stream_free(s);
        /* the stream gives the pieces' bytes; for BPE that is decode's text too (SPM decode
         * also drops the dummy prefix space, a stream is a continuation and keeps it) */
        char pieces[4096];
        size_t pl = 0;
        for (int j = 0; j < k; j++) {
            size_t l1;
            const char *p1 = loom_tokenizer_piece(t, ids[j], &l1);
            if (pl + l1 < sizeof pieces) memcpy(pieces + pl, p1, l1), pl += l1;
        }
        if (!chunks_ok || al != pl || memcmp(all, pieces, pl) ||
            (stream_equals_decode && (!dec || dl != al || memcmp(dec, all, al))))
            bad_stream++;
        free(dec);
        free(norm);
        free(ids);
    }
    CHECK(bad == 0, "%s: %d of 300 random strings do not round-trip", loom_tokenizer_path(t), bad);
    CHECK(bad_stream == 0, "%s: %d of 300 streams differ from decode", loom_tokenizer_path(t),
          bad_stream);
}

static void invalid_utf8(const loom_tokenizer *t) {
    static const char *const bad[] = {"\xff", "abc\x80", "\xc3", "\xc0\xaf", "\xe0\x80\xaf",
                                      "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe4\xb8", "\xf8\x88\x80\x80\x80",
                                      "ok \xe4\xb8 ok"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t *ids = (int32_t *)1;
        loom_err_clear();
        int n = enc(t, bad[i], 0, &ids);
        CHECK(n == -1 && ids == NULL && strstr(loom_last_error(), "not valid UTF-8"),
              "%s: invalid input %zu gave %d (%s)", loom_tokenizer_path(t), i, n, loom_last_error());
    }
    static const char *const good[] = {"\xf4\x8f\xbf\xbf", "\xed\x9f\xbf", "\xef\xbf\xbf", "\xc2\x80"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int32_t *ids = NULL;
        int n = enc(t, good[i], 0, &ids);
        CHECK(n > 0, "%s: valid edge case %zu rejected: %s", loom_tokenizer_path(t), i,
              loom_last_error());
        free(ids);
    }
}

/* ---- synthetic tokenizer.json files ---- */

static char tmpdir[256];

/* A byte-level BPE tokenizer.json: the 256 byte tokens (id = byte), then `extra` tokens and
 * merges, with the given pre_tokenizer / normalizer / model fields. */
static char *write_json(const char *name, const char *pre_json, const char *const *extra,
                        const char *const *merges, bool ignore_merges, const char *model_type) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "added_tokens", cJSON_CreateArray());
    cJSON_AddItemToObject(root, "normalizer", cJSON_CreateNull());
    cJSON_AddItemToObject(root, "pre_tokenizer", cJSON_Parse(pre_json));
    cJSON_AddStringToObject(model, "type", model_type);
    cJSON_AddBoolToObject(model, "ignore_merges", ignore_merges);
    int id = 0;
    for (int b = 0; b < 256; b++) {
        char s[8];
        s[tok_utf8_put(s, tok_byte_to_cp((uint8_t)b))] = 0;
        cJSON_AddNumberToObject(vocab, s, id++);
    }
    for (int i = 0; extra && extra[i]; i++) cJSON_AddNumberToObject(vocab, extra[i], id++);
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON *m = cJSON_CreateArray();
    for (int i = 0; merges && merges[i]; i++) cJSON_AddItemToArray(m, cJSON_CreateString(merges[i]));
    cJSON_AddItemToObject(model, "merges", m);
    cJSON_AddItemToObject(root, "model", model);
    char *txt = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    static char path[512];
    snprintf(path, sizeof path, "%s/%s.json", tmpdir, name);
    FILE *f = fopen(path, "wb");
    fputs(txt, f);
    fclose(f);
    free(txt);
    return path;
}

static void expect_ids(const loom_tokenizer *t, const char *text, const int32_t *want, int nw,
                       const char *what) {
    int32_t *ids = NULL;
    int n = t ? enc(t, text, 0, &ids) : -1;
    bool ok = n == nw && !memcmp(ids, want, (size_t)nw * sizeof *want);
    CHECK(ok, "%s: '%s' gave %d ids (%s)", what, text, n, n < 0 ? loom_last_error() : "");
    if (!ok && n > 0) {
        fprintf(stderr, "  got:");
        for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
}

static void synthetic(void) {
    /* ids: bytes 0..255, then a- (256), -b (257), ab (258), Ġa (259), abc (260), aa (261) */
    static const char *const extra[] = {"a-", "-b", "ab", "\xc4\xa0" "a", "abc", "aa", NULL};
    static const char *const merges[] = {"a -", "- b", "a b", "\xc4\xa0 a", "a a", NULL};
    static const struct {
        const char *behavior;
        int32_t want1[4], n1, want2[4], n2;
    } cases[] = {
        {"Isolated", {97, 45, 98}, 3, {97, 45, 45, 98}, 4},
        {"Removed", {97, 98}, 2, {97, 98}, 2},
        {"MergedWithPrevious", {256, 98}, 2, {256, 45, 98}, 3},
        {"MergedWithNext", {97, 257}, 2, {97, 45, 257}, 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char pre[512];
        snprintf(pre, sizeof pre,
                 "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":"
                 "{\"String\":\"-\"},\"behavior\":\"%s\",\"invert\":false},{\"type\":\"ByteLevel\","
                 "\"add_prefix_space\":false,\"use_regex\":false}]}",
                 cases[i].behavior);
        loom_tokenizer *t = loom_tokenizer_from_json_file(write_json("split", pre, extra, merges, false, "BPE"));
        CHECK(t, "synthetic %s: %s", cases[i].behavior, loom_last_error());
        expect_ids(t, "a-b", cases[i].want1, cases[i].n1, cases[i].behavior);
        expect_ids(t, "a--b", cases[i].want2, cases[i].n2, cases[i].behavior);
        loom_tokenizer_free(t);
    }
    /* ByteLevel add_prefix_space puts a space before each piece; ignore_merges takes whole words */
    const char *bl = "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":false}";
    loom_tokenizer *t = loom_tokenizer_from_json_file(write_json("prefix", bl, extra, merges, false, "BPE"));
    expect_ids(t, "a", (int32_t[]){259}, 1, "add_prefix_space");
    expect_ids(t, "abc", (int32_t[]){32, 258, 99}, 3, "a b ranks before \xc4\xa0 a");
    loom_tokenizer_free(t);
    bl = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}";
    t = loom_tokenizer_from_json_file(write_json("ignore", bl, extra, merges, true, "BPE"));
    expect_ids(t, "abc", (int32_t[]){260}, 1, "ignore_merges");
    expect_ids(t, "abd", (int32_t[]){258, 100}, 2, "ignore_merges, not a token");
    loom_tokenizer_free(t);
    t = loom_tokenizer_from_json_file(write_json("noignore", bl, extra, merges, false, "BPE"));
    expect_ids(t, "abc", (int32_t[]){258, 99}, 2, "without ignore_merges");
    expect_ids(t, "aaa", (int32_t[]){261, 97}, 2, "equal ranks merge left first");
    expect_ids(t, "aaaaa", (int32_t[]){261, 261, 97}, 3, "equal ranks merge left first");
    loom_tokenizer_free(t);

    /* refusals, each naming what is wrong */
    static const struct {
        const char *type, *pre, *want;
    } bad[] = {
        {"Unigram", "null", "'Unigram' is not supported"},
        {"WordPiece", "null", "'WordPiece' is not supported"},
        {"BPE", "null", "without a ByteLevel pre-tokenizer"},
        {"BPE", "{\"type\":\"Whitespace\"}", "'Whitespace' is not supported"},
        {"BPE", "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"}", "does not compile"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p = write_json("bad", bad[i].pre, NULL, NULL, false, bad[i].type);
        t = loom_tokenizer_from_json_file(p);
        CHECK(!t && strstr(loom_last_error(), bad[i].want) && strstr(loom_last_error(), p),
              "bad json %zu: %s", i, loom_last_error());
        loom_tokenizer_free(t);
    }
    static const char *const bad_merge[] = {"a z\xc4\xa0", NULL};
    t = loom_tokenizer_from_json_file(write_json("badmerge", bl, NULL, bad_merge, false, "BPE"));
    CHECK(!t && strstr(loom_last_error(), "not in the vocabulary"), "bad merge: %s", loom_last_error());
    static const char *const bad_merge2[] = {"a", NULL};
    t = loom_tokenizer_from_json_file(write_json("badmerge2", bl, NULL, bad_merge2, false, "BPE"));
    CHECK(!t && strstr(loom_last_error(), "separated by one space"), "bad merge 2: %s", loom_last_error());

    char p[512];
    snprintf(p, sizeof p, "%s/garbage.json", tmpdir);
    FILE *f = fopen(p, "wb");
    fputs("{\"model\": {\"type\": \"BPE\", ", f);
    fclose(f);
    t = loom_tokenizer_load(p);
    CHECK(!t && strstr(loom_last_error(), "not valid JSON"), "truncated json: %s", loom_last_error());
}

static void gguf_errors(void) {
    char p[512];
    snprintf(p, sizeof p, "%s/notok.gguf", tmpdir);
    gguf_writer *w = gguf_writer_new();
    gguf_w_str(w, "general.architecture", "llama");
    CHECK(gguf_writer_save(w, p) == 0, "write %s: %s", p, loom_last_error());
    gguf_writer_free(w);
    loom_tokenizer *t = loom_tokenizer_load(p);
    CHECK(!t && strstr(loom_last_error(), "no tokenizer.ggml.model"), "gguf without vocab: %s",
          loom_last_error());

    w = gguf_writer_new();
    gguf_w_str(w, "tokenizer.ggml.model", "bert");
    gguf_writer_save(w, p);
    gguf_writer_free(w);
    t = loom_tokenizer_load(p);
    CHECK(!t && strstr(loom_last_error(), "'bert' is not supported"), "bert: %s", loom_last_error());

    static const char *const toks[] = {"a", "b", "ab"};
    w = gguf_writer_new();
    gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_w_str(w, "tokenizer.ggml.pre", "mystery");
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    gguf_writer_save(w, p);
    gguf_writer_free(w);
    t = loom_tokenizer_load(p);
    CHECK(!t && strstr(loom_last_error(), "'mystery' is not supported"), "pre: %s", loom_last_error());

    w = gguf_writer_new();
    gguf_w_str(w, "tokenizer.ggml.model", "llama");
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    gguf_w_arr_f32(w, "tokenizer.ggml.scores", (const float[]){0, 0}, 2);
    gguf_writer_save(w, p);
    gguf_writer_free(w);
    t = loom_tokenizer_load(p);
    CHECK(!t && strstr(loom_last_error(), "tokenizer.ggml.scores"), "scores: %s", loom_last_error());

    /* a tiny valid SPM vocabulary without byte tokens or <unk>: unknown characters are an error */
    w = gguf_writer_new();
    gguf_w_str(w, "tokenizer.ggml.model", "llama");
    static const char *const spm[] = {"a", "b", "\xe2\x96\x81", "ab", "\xe2\x96\x81" "ab"};
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", spm, 5);
    gguf_w_arr_f32(w, "tokenizer.ggml.scores", (const float[]){0, 0, 0, 1, 2}, 5);
    CHECK(gguf_writer_save(w, p) == 0, "save tiny spm: %s", loom_last_error());
    gguf_writer_free(w);
    t = loom_tokenizer_load(p);
    CHECK(t, "tiny spm: %s", loom_last_error());
    if (t) {
        expect_ids(t, "ab", (int32_t[]){4}, 1, "tiny spm");
        expect_ids(t, "ab a", (int32_t[]){4, 2, 0}, 3, "tiny spm");
        int32_t *ids = NULL;
        CHECK(enc(t, "abc", 0, &ids) == -1 && strstr(loom_last_error(), "no token"), "tiny spm c: %s",
              loom_last_error());
        free(ids);
        loom_tokenizer_free(t);
    }
}

int main(void) {
    const char *f = getenv("LOOM_FIXTURES"), *d = getenv("LOOM_TOK_DATA");
    if (!f || !d) {
        fprintf(stderr, "LOOM_FIXTURES and LOOM_TOK_DATA must be set (ctest sets them)\n");
        return 1;
    }
    snprintf(fx, sizeof fx, "%s", f);
    snprintf(data, sizeof data, "%s", d);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/loom_tok_test_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;

    loom_tokenizer *qwen = load(data, "qwen3");
    loom_tokenizer *llama3 = load(data, "llama3/tokenizer.json");
    loom_tokenizer *spm = load(fx, "tokenizer/ggml-vocab-llama-spm.gguf");
    loom_tokenizer *stories = load(fx, "stories260K.gguf");
    if (!qwen || !llama3 || !spm || !stories) CHECK_DONE();

    round_trips(qwen, true, true);
    round_trips(llama3, false, true);
    round_trips(spm, false, false);
    round_trips(stories, false, false);
    invalid_utf8(qwen);
    invalid_utf8(spm);

    /* SPM word-by-word merging must give what merging the whole text at once gives */
    {
        CHECK(spm->spm_words, "llama-spm vocabulary should allow word-by-word merging");
        char text[1024];
        int diff = 0;
        for (int i = 0; i < 200; i++) {
            size_t n = random_text(text, 80);
            int32_t *a = NULL, *b = NULL;
            spm->spm_words = true;
            int na = loom_tokenizer_encode(spm, text, n, 0, &a);
            spm->spm_words = false;
            int nb = loom_tokenizer_encode(spm, text, n, 0, &b);
            diff += na != nb || (na > 0 && memcmp(a, b, (size_t)na * sizeof *a));
            free(a);
            free(b);
        }
        spm->spm_words = true;
        CHECK(diff == 0, "%d of 200 texts differ between word-wise and whole-text SPM merging", diff);
    }

    /* special tokens */
    {
        int32_t *ids = NULL;
        const char *chat = "<|im_start|>user\nhi<think></think><|im_end|>";
        int n = enc(qwen, chat, LOOM_TOK_PARSE_SPECIAL, &ids);
        CHECK(n > 3 && ids[0] == 151644 && ids[n - 1] == 151645 && has_id(ids, n, 151667) &&
                  has_id(ids, n, 151668), "qwen specials parsed: n=%d", n);
        free(ids);
        n = enc(qwen, chat, 0, &ids);
        /* <think> is a user-defined (non-special) added token: always matched; the others not */
        CHECK(n > 3 && !has_id(ids, n, 151644) && !has_id(ids, n, 151645) && has_id(ids, n, 151667),
              "qwen specials as text: n=%d", n);
        size_t dl;
        char *dec = loom_tokenizer_decode(qwen, ids, (size_t)n, 0, &dl);
        CHECK(dec && dl == strlen(chat) && !memcmp(dec, chat, dl), "qwen special text round trip");
        free(dec);
        free(ids);
        n = enc(qwen, chat, LOOM_TOK_PARSE_SPECIAL, &ids);
        dec = loom_tokenizer_decode(qwen, ids, (size_t)n, LOOM_TOK_SKIP_SPECIAL, &dl);
        CHECK(dec && !strcmp(dec, "user\nhi<think></think>"), "qwen skip special: '%s'", dec ? dec : "");
        free(dec);
        free(ids);

        n = enc(spm, "<s>Hi</s>", LOOM_TOK_PARSE_SPECIAL | LOOM_TOK_ADD_BOS, &ids);
        CHECK(n >= 4 && ids[0] == 1 && ids[1] == 1 && ids[n - 1] == 2, "spm <s> parsed: n=%d", n);
        free(ids);
        n = enc(spm, "<s>", 0, &ids);
        CHECK(n > 1 && !has_id(ids, n, 1), "spm <s> as text: n=%d", n);
        free(ids);
        n = enc(llama3, "<|begin_of_text|>Hi", LOOM_TOK_PARSE_SPECIAL | LOOM_TOK_ADD_BOS, &ids);
        CHECK(n == 3 && ids[0] == 128000 && ids[1] == 128000, "llama3 bos: n=%d", n);
        free(ids);
    }

    /* Qwen normalises to NFC before splitting: a decomposed é encodes as the composed one */
    {
        int32_t *a = NULL, *b = NULL;
        int na = enc(qwen, "caf\x65\xcc\x81 ok", 0, &a), nb = enc(qwen, "caf\xc3\xa9 ok", 0, &b);
        CHECK(na > 0 && na == nb && !memcmp(a, b, (size_t)na * sizeof *a), "qwen NFC");
        free(a);
        free(b);
        na = enc(llama3, "caf\x65\xcc\x81", 0, &a), nb = enc(llama3, "caf\xc3\xa9", 0, &b);
        CHECK(na > 0 && (na != nb || memcmp(a, b, (size_t)na * sizeof *a)), "llama3 does not normalise");
        free(a);
        free(b);
    }

    /* \s is Unicode White_Space as in HF (Oniguruma) and llama.cpp: U+180E is not a space */
    {
        size_t rl;
        const char *pat = "a\\s[^\\s\\p{L}]\\S[]\\s]\\Q\\s\\E";
        char *r = tok_regex_rewrite(pat, strlen(pat), &rl);
        CHECK(r && strstr(r, "a[\\x{9}-") && strstr(r, "[^\\x{9}-\\x{D}\\x{20}") &&
                  strstr(r, "[^\\x{9}") && strstr(r, "\\p{L}]") && strstr(r, "[]\\x{9}") &&
                  strstr(r, "\\Q\\s\\E"),
              "regex rewrite: %s", r ? r : "");
        free(r);
        /* "x \u180Ey": with U+180E not a space the pieces are "x", " \u180E", "y" */
        int32_t *all = NULL, *p1 = NULL, *p2 = NULL, *p3 = NULL;
        int n = enc(qwen, "x \xe1\xa0\x8ey", 0, &all), n1 = enc(qwen, "x", 0, &p1),
            n2 = enc(qwen, " \xe1\xa0\x8e", 0, &p2), n3 = enc(qwen, "y", 0, &p3);
        bool ok = n == n1 + n2 + n3 && n1 > 0 && n2 > 0 && n3 > 0 && !memcmp(all, p1, (size_t)n1 * 4) &&
                  !memcmp(all + n1, p2, (size_t)n2 * 4) && !memcmp(all + n1 + n2, p3, (size_t)n3 * 4);
        CHECK(ok, "U+180E split like a non-space (%d = %d + %d + %d)", n, n1, n2, n3);
        free(all);
        free(p1);
        free(p2);
        free(p3);
    }

    /* queries */
    CHECK(loom_tokenizer_bos(qwen) == -1 && !loom_tokenizer_wants_bos(qwen), "qwen has no BOS");
    CHECK(loom_tokenizer_eos(qwen) == 151645, "qwen eos %d", loom_tokenizer_eos(qwen));
    CHECK(loom_tokenizer_is_special(qwen, 151644) && !loom_tokenizer_is_special(qwen, 151667) &&
              !loom_tokenizer_is_special(qwen, 100),
          "qwen is_special");
    CHECK(loom_tokenizer_token_type(qwen, 151667) == LOOM_TOKEN_USER_DEFINED, "qwen <think> type");
    CHECK(loom_tokenizer_is_eog(qwen, 151645) && loom_tokenizer_is_eog(qwen, 151643) &&
              !loom_tokenizer_is_eog(qwen, 151644),
          "qwen eog");
    CHECK(loom_tokenizer_chat_template(qwen) && strstr(loom_tokenizer_chat_template(qwen), "im_start"),
          "qwen chat template");
    CHECK(loom_tokenizer_bos(llama3) == 128000 && loom_tokenizer_eos(llama3) == 128001, "llama3 bos/eos");
    CHECK(loom_tokenizer_is_eog(llama3, 128009) && loom_tokenizer_chat_template(llama3), "llama3 eot");
    CHECK(loom_tokenizer_bos(spm) == 1 && loom_tokenizer_eos(spm) == 2 && loom_tokenizer_wants_bos(spm),
          "spm bos/eos");
    CHECK(!strcmp(loom_tokenizer_kind(spm), "spm") && !strcmp(loom_tokenizer_kind(qwen), "bpe"), "kinds");
    CHECK(loom_tokenizer_token_type(spm, 3 + 0x0a) == LOOM_TOKEN_BYTE, "spm byte token type");

    /* pieces */
    {
        size_t l;
        const char *p = loom_tokenizer_piece(llama3, 22691, &l);
        CHECK(p && l == 6 && !memcmp(p, " Hello", 6), "llama3 piece of ĠHello");
        CHECK(!strcmp(loom_tokenizer_token_text(llama3, 22691, NULL), "\xc4\xa0Hello"), "llama3 token text");
        CHECK(loom_tokenizer_find(llama3, "\xc4\xa0Hello", 7) == 22691, "find ĠHello");
        CHECK(loom_tokenizer_find(llama3, "no such token here", 18) == -1, "find missing");
        p = loom_tokenizer_piece(spm, 3 + 0x0a, &l);
        CHECK(p && l == 1 && p[0] == '\n', "spm <0x0A> piece");
        p = loom_tokenizer_piece(spm, 15043, &l);
        CHECK(p && l == 6 && !memcmp(p, " Hello", 6), "spm ▁Hello piece");
        CHECK(!loom_tokenizer_piece(spm, 32000, &l) && strstr(loom_last_error(), "out of range"),
              "piece out of range");
        CHECK(!loom_tokenizer_piece(spm, -1, &l), "piece -1");
        int32_t bad[] = {5, 99999999};
        CHECK(!loom_tokenizer_decode(spm, bad, 2, 0, &l) && strstr(loom_last_error(), "out of range"),
              "decode out of range");
    }

    /* byte fallback tokens: decode is byte-exact, the stream holds incomplete characters */
    {
        int32_t ids[] = {3 + 0xe4, 3 + 0xb8, 3 + 0xad, 3 + 0xe4, 3 + 0xb8};
        size_t l;
        char *dec = loom_tokenizer_decode(spm, ids, 5, 0, &l);
        CHECK(dec && l == 5 && !memcmp(dec, "\xe4\xb8\xad\xe4\xb8", 5), "byte-exact decode");
        free(dec);
        loom_tokenizer_stream *s = loom_tokenizer_stream_new(spm, 0);
        const char *c = loom_tokenizer_stream_put(s, ids[0], &l);
        CHECK(c && l == 0, "stream holds e4");
        c = loom_tokenizer_stream_put(s, ids[1], &l);
        CHECK(c && l == 0, "stream holds e4 b8");
        c = loom_tokenizer_stream_put(s, ids[2], &l);
        CHECK(c && l == 3 && !memcmp(c, "\xe4\xb8\xad", 3), "stream emits 中");
        loom_tokenizer_stream_put(s, ids[3], &l);
        loom_tokenizer_stream_put(s, ids[4], &l);
        c = loom_tokenizer_stream_finish(s, &l);
        CHECK(c && l == 2 && !memcmp(c, "\xe4\xb8", 2), "finish returns the incomplete tail");
        c = loom_tokenizer_stream_put(s, 3 + 0xff, &l);
        CHECK(c && l == 1 && (uint8_t)c[0] == 0xff, "never-valid byte passes through");
        c = loom_tokenizer_stream_put(s, 3 + 0xe4, &l);
        c = loom_tokenizer_stream_put(s, 3 + 'a', &l);
        CHECK(c && l == 2 && !memcmp(c, "\xe4" "a", 2), "broken sequence passes through");
        c = loom_tokenizer_stream_put(s, 3 + 0xed, &l);
        CHECK(c && l == 0, "stream holds ed");
        c = loom_tokenizer_stream_put(s, 3 + 0xa0, &l); /* ed a0: a surrogate, never valid */
        CHECK(c && l == 2, "surrogate prefix passes through (%zu)", l);
        CHECK(!loom_tokenizer_stream_put(s, 40000, &l), "stream id out of range");
        loom_tokenizer_stream_free(s);

        s = loom_tokenizer_stream_new(qwen, LOOM_TOK_SKIP_SPECIAL);
        c = loom_tokenizer_stream_put(s, 151645, &l);
        CHECK(c && l == 0, "stream skips <|im_end|>");
        loom_tokenizer_stream_free(s);
    }

    /* empty text, BOS only when asked */
    {
        int32_t *ids = NULL;
        CHECK(loom_tokenizer_encode(spm, "", 0, 0, &ids) == 0 && ids, "empty");
        free(ids);
        CHECK(loom_tokenizer_encode(spm, "", 0, LOOM_TOK_ADD_BOS, &ids) == 1 && ids[0] == 1, "empty + bos");
        free(ids);
        CHECK(loom_tokenizer_encode(qwen, "", 0, LOOM_TOK_ADD_BOS, &ids) == 0, "qwen has no bos to add");
        free(ids);
    }

    /* loading errors */
    {
        char p[2048];
        snprintf(p, sizeof p, "%s/llama-tiny", fx);
        loom_tokenizer *t = loom_tokenizer_load(p);
        CHECK(!t && strstr(loom_last_error(), "no tokenizer.json") && strstr(loom_last_error(), p),
              "dir without tokenizer.json: %s", loom_last_error());
        t = loom_tokenizer_load("/nonexistent/tok.json");
        CHECK(!t && strstr(loom_last_error(), "/nonexistent/tok.json"), "missing: %s", loom_last_error());
    }
    synthetic();
    gguf_errors();

    loom_tokenizer_free(qwen);
    loom_tokenizer_free(llama3);
    loom_tokenizer_free(spm);
    loom_tokenizer_free(stories);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    CHECK_DONE();
}
