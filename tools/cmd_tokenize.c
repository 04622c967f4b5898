/* loom tokenize: show how a model's tokenizer splits a text. */
#include "tools/commands.h"
#include "tools/options.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Read all of stdin; binary-safe. */
static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) break;
        if (n == cap) {
            char *q = realloc(buf, cap *= 2);
            if (!q) free(buf);
            buf = q;
        }
    }
    if (buf && ferror(stdin)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static void print_escaped(const unsigned char *p, size_t n) {
    putchar('\'');
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c >= 0x80) { /* keep whole UTF-8 characters, escape stray bytes */
            int l = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
            bool ok = l > 0 && i + (size_t)l <= n && c >= 0xc2 && c <= 0xf4;
            for (int k = 1; ok && k < l; k++) ok = (p[i + k] & 0xc0) == 0x80;
            if (ok && l >= 3) { /* no overlongs, surrogates or code points past U+10FFFF */
                unsigned c1 = p[i + 1];
                ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 > 0x9f) &&
                     !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 > 0x8f);
            }
            if (ok) {
                fwrite(p + i, 1, (size_t)l, stdout);
                i += (size_t)l;
            } else {
                printf("\\x%02x", c);
                i++;
            }
            continue;
        }
        switch (c) {
        case '\n': fputs("\\n", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\'': fputs("\\'", stdout); break;
        default:
            if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
            else putchar(c);
        }
        i++;
    }
    putchar('\'');
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL;
    bool ids_only = false, no_bos = false, no_special = false;
    const loom_opt opts[] = {
        {.names = "-m|--model",
         .type = LOOM_OPT_STR,
         .arg = "MODEL",
         .help = "a .gguf (a vocabulary-only one is fine), a tokenizer.json, or a directory\n"
                 "holding tokenizer.json (default: the bundled model)",
         .dst = &model},
        {.names = "-p|--prompt", .type = LOOM_OPT_STR, .arg = "TEXT", .help = "the text (default: all of standard input)",
         .dst = &prompt},
        {.names = "--ids", .type = LOOM_OPT_FLAG, .help = "print only the ids, on one line", .dst = &ids_only},
        {.names = "--no-bos", .type = LOOM_OPT_FLAG, .help = "do not add BOS even where the model expects it",
         .dst = &no_bos},
        {.names = "--no-parse-special",
         .type = LOOM_OPT_FLAG,
         .help = "treat control tokens in the text (<|im_start|>, <s>) as text",
         .dst = &no_special},
        LOOM_OPT_HEADING("Otherwise one line per token: the id and the bytes it stands for, quoted, with control\n"
                         "characters, quotes, backslashes and bytes that are not whole UTF-8 escaped."),
        LOOM_OPT_END,
    };
    int prc = loom_opts_parse("tokenize", "[-m MODEL] [--ids] [--no-bos] [--no-parse-special] [-p TEXT]",
                              "Tokenize TEXT, or else all of standard input exactly as given (no newline added or\n"
                              "removed), with MODEL's tokenizer.",
                              opts, NULL, argc, argv);
    if (prc >= 0) return prc;
    bool parse_special = !no_special;
    if (!model) model = loom_default_model();

    loom_tokenizer *t = loom_tokenizer_load(model);
    if (!t) {
        fprintf(stderr, "loom tokenize: %s\n", loom_last_error());
        return 1;
    }
    size_t len;
    char *owned = NULL;
    const char *text = prompt;
    if (prompt) {
        len = strlen(prompt);
    } else if (!(text = owned = read_stdin(&len))) {
        fprintf(stderr, "loom tokenize: cannot read standard input\n");
        loom_tokenizer_free(t);
        return 1;
    }
    unsigned flags = (parse_special ? LOOM_TOK_PARSE_SPECIAL : 0) |
                     (!no_bos && loom_tokenizer_wants_bos(t) ? LOOM_TOK_ADD_BOS : 0);
    int32_t *ids = NULL;
    int n = loom_tokenizer_encode(t, text, len, flags, &ids);
    if (n < 0) {
        fprintf(stderr, "loom tokenize: %s\n", loom_last_error());
        free(owned);
        loom_tokenizer_free(t);
        return 1;
    }
    if (ids_only) {
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    } else {
        for (int i = 0; i < n; i++) {
            size_t pl;
            const char *piece = loom_tokenizer_piece(t, ids[i], &pl);
            printf("%6d ", ids[i]);
            print_escaped((const unsigned char *)piece, pl);
            putchar('\n');
        }
    }
    int rc = fflush(stdout) == 0 ? 0 : 1;
    free(ids);
    free(owned);
    loom_tokenizer_free(t);
    return rc;
}
