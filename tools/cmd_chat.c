/* loom chat: an interactive conversation. Each turn appends only its own tokens to the KV cache;
 * the history is never re-evaluated, except when the context is full: then the oldest half of the
 * conversation after the first turn is dropped (a context shift) and the rest re-evaluated, and
 * the chat says so. On a terminal the line is edited with libedit (history with the arrow keys);
 * Ctrl-C stops a reply and returns to the prompt, a second Ctrl-C (or one at the prompt) exits. */
#include "tools/commands.h"
#include "tools/options.h"

#include "loom.h"
#include "models/model.h"
#include "models/session_internal.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

#include <editline/readline.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t generating, stop_reply;

static void on_sigint(int sig) {
    (void)sig;
    if (generating && !stop_reply) {
        stop_reply = 1; /* the reply stops at the next token */
        return;
    }
    static const char bye[] = "\n";
    ssize_t w = write(2, bye, 1);
    (void)w;
    _exit(130);
}

static const char *HELP = "/help   this text\n"
                          "/clear  forget the conversation (the system prompt stays)\n"
                          "/exit   leave (also Ctrl-D; Ctrl-C stops a reply, a second Ctrl-C leaves)\n";

/* One line from the user: libedit on a terminal, plain getline otherwise. NULL at the end. */
static char *read_line(bool tty, char **buf, size_t *cap) {
    if (tty) {
        char *l = readline("> ");
        if (l && *l) add_history(l);
        return l;
    }
    ssize_t len = getline(buf, cap, stdin);
    if (len < 0) return NULL;
    while (len > 0 && ((*buf)[len - 1] == '\n' || (*buf)[len - 1] == '\r')) (*buf)[--len] = 0;
    return strdup(*buf);
}

int cmd_chat(int argc, char **argv) {
    loom_common_opts co;
    loom_common_defaults(&co);
    const char *system = NULL;
    long n_max = 256;
    loom_sampling_args sa = {.temp = 0.7, .top_p = 0.95, .rep = 1, .top_k = 40, .last_n = 64, .seed = 1};
    loom_opt sampling_rows[LOOM_SAMPLING_ROWS];
    loom_sampling_rows(sampling_rows, &sa);
    bool verbose = false;
    const loom_opt opts[] = {
        {.names = "--system", .type = LOOM_OPT_STR, .arg = "TEXT", .help = "the system prompt", .dst = &system},
        {.names = "-n",
         .type = LOOM_OPT_INT,
         .arg = "N",
         .help = "most tokens in one reply",
         .lo = 1,
         .hi = 1 << 20,
         .dst = &n_max},
        {.type = LOOM_OPT_INCLUDE, .dst = sampling_rows},
        {.names = "--verbose",
         .type = LOOM_OPT_FLAG,
         .help = "say the chat format, the device and each turn's token counts",
         .dst = &verbose},
        LOOM_OPT_END,
    };
    int prc = loom_opts_parse("chat", "[-m MODEL] [options]",
                              "One user message per line from stdin (edited with libedit on a terminal); in the chat:\n"
                              "/help, /clear, /exit. Ctrl-C stops a reply, a second one leaves; Ctrl-D leaves.",
                              opts, &co, argc, argv);
    if (prc >= 0) return prc;
    const char *path = loom_model_path(&co);
    int rc = 1;
    loom_session *s = NULL;
    loom_sampler *smp = NULL;
    loom_tokenizer_stream *stream = NULL;
    int32_t *hist = NULL;
    char *buf = NULL;
    size_t cap = 0;
    loom_model *m = loom_model_load(path);
    loom_tokenizer *tok = m ? loom_tokenizer_load(path) : NULL;
    if (!m || !tok) {
        fprintf(stderr, "loom chat: %s\n", loom_last_error());
        goto done;
    }
    loom_model_info info = loom_model_get_info(m);
    /* the family's default format (models/: loom_arch.chat_format) when the template says nothing */
    loom_chat_format fmt = loom_chat_detect_tok(tok, loom_model_chat_family(m));
    loom_session_opts so = loom_common_session_opts(&co);
    so.verbose = verbose;
    s = loom_session_new(m, &so);
    loom_sampler_opts sopt = loom_sampling_opts(&sa);
    smp = s ? loom_sampler_new(&sopt) : NULL;
    stream = smp ? loom_tokenizer_stream_new(tok, LOOM_TOK_SKIP_SPECIAL) : NULL;
    int ctx = s ? loom_session_ctx(s) : 0;
    hist = stream ? malloc((size_t)ctx * sizeof *hist) : NULL;
    if (!hist) {
        fprintf(stderr, "loom chat: %s\n", s && stream ? "out of memory" : loom_last_error());
        goto done;
    }
    if (verbose) fprintf(stderr, "loom chat: template %s, context %d tokens\n", loom_chat_format_name(fmt), ctx);
    struct sigaction act = {.sa_handler = on_sigint};
    sigemptyset(&act.sa_mask);
    sigaction(SIGINT, &act, NULL);
    bool tty = isatty(0) && isatty(1), first = true, after_reply = false;
    int n_hist = 0, n_keep = 0; /* the first turn (system prompt) is kept through context shifts */
    for (int turn = 1;;) {
        char *line = read_line(tty, &buf, &cap);
        if (!line) break;
        if (!*line) { /* an empty line: ask again */
            free(line);
            continue;
        }
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) {
            free(line);
            break;
        }
        if (!strcmp(line, "/help")) {
            fputs(HELP, stdout);
            free(line);
            continue;
        }
        if (!strcmp(line, "/clear")) {
            loom_session_reset(s);
            loom_sampler_reset(smp);
            first = true;
            after_reply = false;
            n_hist = n_keep = 0;
            printf("(conversation cleared)\n");
            free(line);
            continue;
        }
        char *text = loom_chat_user_turn(fmt, system, line, first, after_reply);
        free(line);
        int32_t *ids = NULL;
        unsigned flags = LOOM_TOK_PARSE_SPECIAL | (first && loom_tokenizer_wants_bos(tok) ? LOOM_TOK_ADD_BOS : 0);
        int n = text ? loom_tokenizer_encode(tok, text, strlen(text), flags, &ids) : -1;
        free(text);
        if (n < 0) {
            fprintf(stderr, "loom chat: %s\n", text ? loom_last_error() : "out of memory");
            goto done;
        }
        /* room for the turn and a few reply tokens: shift the conversation, or refuse the turn */
        int need = n + 8;
        while (n_hist + need > ctx && n_hist > n_keep + 1) {
            int dropped = loom_session_ctx_shift(s, hist, &n_hist, n_keep);
            if (dropped < 0) break;
            fprintf(stderr, "[context full: the oldest %d tokens of the conversation are forgotten]\n", dropped);
        }
        if (n_hist + need > ctx) {
            fprintf(stderr, "loom chat: this message (%d tokens) does not fit the context of %d tokens (raise --ctx)\n", n,
                    ctx);
            free(ids);
            continue;
        }
        int before = n_hist;
        int r = loom_session_eval(s, ids, n);
        if (r == 0) {
            memcpy(hist + n_hist, ids, (size_t)n * sizeof *hist);
            n_hist += n;
            for (int i = 0; i < n; i++) loom_sampler_accept(smp, ids[i]);
        }
        free(ids);
        if (r < 0) {
            fprintf(stderr, "loom chat: %s\n", loom_last_error());
            goto done;
        }
        if (first) n_keep = n_hist;
        first = false;
        after_reply = true;
        int gen = 0;
        generating = 1;
        stop_reply = 0;
        for (; gen < n_max && !stop_reply; gen++) {
            int32_t next = loom_sampler_sample(smp, loom_session_logits(s, NULL), info.n_vocab);
            if (next < 0) {
                generating = 0;
                fprintf(stderr, "\nloom chat: reply step %d: %s\n", gen + 1, loom_last_error());
                goto done;
            }
            if (loom_tokenizer_is_eog(tok, next)) break;
            size_t plen;
            const char *piece = loom_tokenizer_stream_put(stream, next, &plen);
            if (piece) fwrite(piece, 1, plen, stdout);
            fflush(stdout);
            if (n_hist + 1 >= ctx) {
                int dropped = n_hist > n_keep + 1 ? loom_session_ctx_shift(s, hist, &n_hist, n_keep) : -1;
                if (dropped < 0) {
                    fprintf(stderr, "\n[context full: the reply stops here (raise --ctx)]");
                    break;
                }
                fprintf(stderr, "\n[context full: the oldest %d tokens of the conversation are forgotten]\n", dropped);
            }
            if (loom_session_eval(s, &next, 1) < 0) {
                generating = 0;
                fprintf(stderr, "\nloom chat: %s\n", loom_last_error());
                goto done;
            }
            hist[n_hist++] = next;
        }
        generating = 0;
        size_t plen;
        const char *rest = loom_tokenizer_stream_finish(stream, &plen);
        if (rest) fwrite(rest, 1, plen, stdout);
        if (stop_reply) printf(" [stopped]");
        printf("\n");
        fflush(stdout);
        if (verbose)
            fprintf(stderr, "loom chat: turn %d: prefilled %d new tokens (cache held %d), generated %d\n", turn, n, before, gen);
        turn++;
    }
    rc = 0;
done:
    free(buf);
    free(hist);
    loom_tokenizer_stream_free(stream);
    loom_sampler_free(smp);
    loom_session_free(s);
    loom_tokenizer_free(tok);
    loom_model_free(m);
    return rc;
}
