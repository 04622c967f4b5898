/* loom chat: an interactive conversation. Each turn appends only its own tokens to the KV cache;
 * the history is never re-evaluated. */
#include "tools/commands.h"

#include "tokenizer/chat.h"
#include "loom.h"
#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f) {
    fprintf(f, "usage: loom chat [-m MODEL] [--system TEXT] [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S]\n"
               "                 [--device D] [-t N] [--ctx N] [--verbose]\n"
               "Reads one user message per line from stdin; an empty line or /exit ends the chat.\n");
}

int cmd_chat(int argc, char **argv) {
    loom_common_opts co;
    loom_common_defaults(&co);
    const char *system = NULL;
    long n_max = 256, seed = 1, top_k = 40;
    double temp = 0.7, top_p = 0.95;
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        const char *a, *val;
        int rc, r = loom_next_opt(&co, argc, argv, &i, &a, &val, usage, &rc);
        if (r == LOOM_OPT_TAKEN) continue;
        if (r == LOOM_OPT_EXIT) return rc;
        int bad = 0;
        if (!strcmp(a, "--system") && val) {
            system = argv[++i];
        } else if (!strcmp(a, "-n") && val) {
            bad = loom_parse_int(a, argv[++i], 1, 1 << 20, &n_max);
        } else if (!strcmp(a, "--temp") && val) {
            bad = loom_parse_float(a, argv[++i], &temp);
        } else if (!strcmp(a, "--top-k") && val) {
            bad = loom_parse_int(a, argv[++i], 0, 1 << 30, &top_k);
        } else if (!strcmp(a, "--top-p") && val) {
            bad = loom_parse_float(a, argv[++i], &top_p);
        } else if (!strcmp(a, "--seed") && val) {
            bad = loom_parse_int(a, argv[++i], 0, 0x7fffffffL, &seed);
        } else if (!strcmp(a, "--verbose")) {
            verbose = true;
        } else {
            return loom_bad_opt("chat", a, usage);
        }
        if (bad) return 2;
    }
    const char *path = loom_model_path(&co);
    int rc = 1;
    loom_session *s = NULL;
    loom_sampler *smp = NULL;
    loom_tokenizer_stream *stream = NULL;
    char *line = NULL;
    size_t cap = 0;
    loom_model *m = loom_model_load(path);
    loom_tokenizer *tok = m ? loom_tokenizer_load(path) : NULL;
    if (!m || !tok) {
        fprintf(stderr, "loom chat: %s\n", loom_last_error());
        goto done;
    }
    loom_model_info info = loom_model_get_info(m);
    loom_chat_format fmt = loom_chat_detect(loom_tokenizer_chat_template(tok), info.arch,
                                            loom_tokenizer_find(tok, "<|im_start|>", 12) >= 0,
                                            loom_tokenizer_find(tok, "<|start_header_id|>", 19) >= 0);
    loom_session_opts so = loom_common_session_opts(&co);
    so.verbose = verbose;
    s = loom_session_new(m, &so);
    loom_sampler_opts sopt = {.temperature = (float)temp, .top_k = (int)top_k, .top_p = (float)top_p, .seed = (uint64_t)seed};
    smp = s ? loom_sampler_new(&sopt) : NULL;
    stream = smp ? loom_tokenizer_stream_new(tok, LOOM_TOK_SKIP_SPECIAL) : NULL;
    if (!stream) {
        fprintf(stderr, "loom chat: %s\n", loom_last_error());
        goto done;
    }
    if (verbose) fprintf(stderr, "loom chat: template %s, context %d tokens\n", loom_chat_format_name(fmt), loom_session_ctx(s));
    bool tty = isatty(0), first = true, after_reply = false;
    for (int turn = 1;; turn++) {
        if (tty) {
            printf("> ");
            fflush(stdout);
        }
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0 || !strcmp(line, "/exit")) break;
        char *text = loom_chat_user_turn(fmt, system, line, first, after_reply);
        int32_t *ids = NULL;
        unsigned flags = LOOM_TOK_PARSE_SPECIAL | (first && loom_tokenizer_wants_bos(tok) ? LOOM_TOK_ADD_BOS : 0);
        int n = text ? loom_tokenizer_encode(tok, text, strlen(text), flags, &ids) : -1;
        free(text);
        if (n < 0) {
            fprintf(stderr, "loom chat: %s\n", text ? loom_last_error() : "out of memory");
            goto done;
        }
        if (loom_session_pos(s) + n >= loom_session_ctx(s)) {
            fprintf(stderr, "loom chat: the conversation is full (%d of %d tokens); raise --ctx\n", loom_session_pos(s),
                    loom_session_ctx(s));
            free(ids);
            goto done;
        }
        int before = loom_session_pos(s);
        int r = loom_session_eval(s, ids, n);
        free(ids);
        if (r < 0) {
            fprintf(stderr, "loom chat: %s\n", loom_last_error());
            goto done;
        }
        first = false;
        after_reply = true;
        int gen = 0;
        for (; gen < n_max; gen++) {
            int32_t next = loom_sampler_sample(smp, loom_session_logits(s, NULL), info.n_vocab);
            if (loom_tokenizer_is_eog(tok, next)) break;
            size_t plen;
            const char *piece = loom_tokenizer_stream_put(stream, next, &plen);
            if (piece) fwrite(piece, 1, plen, stdout);
            fflush(stdout);
            if (loom_session_pos(s) + 1 >= loom_session_ctx(s)) break;
            if (loom_session_eval(s, &next, 1) < 0) {
                fprintf(stderr, "\nloom chat: %s\n", loom_last_error());
                goto done;
            }
        }
        size_t plen;
        const char *rest = loom_tokenizer_stream_finish(stream, &plen);
        if (rest) fwrite(rest, 1, plen, stdout);
        printf("\n");
        fflush(stdout);
        if (verbose)
            fprintf(stderr, "loom chat: turn %d: prefilled %d new tokens (cache held %d), generated %d\n", turn, n, before,
                    gen);
    }
    rc = 0;
done:
    free(line);
    loom_tokenizer_stream_free(stream);
    loom_sampler_free(smp);
    loom_session_free(s);
    loom_tokenizer_free(tok);
    loom_model_free(m);
    return rc;
}
