/* loom run: prefill a prompt, then decode and stream tokens until EOS or -n. */
#include "tools/commands.h"
#include "tools/options.h"

#include "loom.h"
#include "tools/run_multi.h"
#include "models/session_internal.h"
#include "tokenizer/tokenizer.h"
#include "core/util.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_tokens(const char *s, int32_t **out) {
    int cap = 16, n = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return -1;
    while (*s) {
        char *end;
        long id = strtol(s, &end, 10);
        if (end == s || id < 0 || id > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "loom: --tokens expects comma-separated non-negative ids, got '%s'\n", s);
            free(v);
            return -1;
        }
        if (n == cap) {
            int32_t *p = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            if (!p) {
                free(v);
                return -1;
            }
            v = p;
        }
        v[n++] = (int32_t)id;
        s = *end ? end + 1 : end;
    }
    *out = v;
    return n;
}

#define MAX_PROMPTS 256
#define RUN_MAX_STOP 8

/* Read one prompt per non-empty line of path into v (strings owned by *buf). */
static int read_prompt_file(const char *path, const char **v, int *n, char **buf) {
    FILE *f = loom_fopen_regular(path);
    if (!f) return -1;
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    for (size_t r; b && (r = fread(b + len, 1, cap - len - 1, f)) > 0;) {
        len += r;
        if (len + 1 == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) free(b);
            b = nb;
        }
    }
    fclose(f);
    if (!b) return loom_err("%s: out of memory", path);
    b[len] = 0;
    *buf = b;
    const char *nul = memchr(b, 0, len); /* it cut the prompt short, silently */
    if (nul) return loom_err("%s: byte %zu is a NUL: a prompt file is text", path, (size_t)(nul - b));
    for (char *line = strtok(b, "\r\n"); line; line = strtok(NULL, "\r\n")) {
        if (!*line) continue;
        if (*n == MAX_PROMPTS) return loom_err("%s: more than %d prompts", path, MAX_PROMPTS);
        v[(*n)++] = line;
    }
    return 0;
}

/* -f FILE: the whole file is one prompt (one trailing newline dropped, as llama.cpp's -f does). */
static char *read_whole_file(const char *path) {
    FILE *f = loom_fopen_regular(path);
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    for (size_t r; b && (r = fread(b + len, 1, cap - len - 1, f)) > 0;) {
        len += r;
        if (len + 1 == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) free(b);
            b = nb;
        }
    }
    bool err = ferror(f);
    fclose(f);
    if (!b) return loom_err_null("%s: out of memory", path);
    if (err) {
        free(b);
        return loom_err_null("%s: read error", path);
    }
    if (memchr(b, 0, len)) { /* it would cut the prompt short, silently */
        loom_err("%s: byte %zu is a NUL: a prompt file is text", path, (size_t)((char *)memchr(b, 0, len) - b));
        free(b);
        return NULL;
    }
    if (len && b[len - 1] == '\n') len--;
    if (len && b[len - 1] == '\r') len--;
    b[len] = 0;
    return b;
}

/* Several prompts, --parallel or --beams: the batch path (tools/run_multi.c). */
static int run_several(loom_model *m, loom_tokenizer *tok, const loom_common_opts *co, const char **texts,
                       int n_texts, const char **tok_args, int n_tok_args, run_multi_opts *ro) {
    int32_t *prompts[2 * MAX_PROMPTS];
    int lens[2 * MAX_PROMPTS], n = 0, rc = 1;
    loom_session *s = NULL;
    for (int i = 0; i < n_texts + n_tok_args; i++) {
        int k;
        if (i < n_texts) {
            if (!tok) {
                fprintf(stderr, "loom: the model has no usable tokenizer: use --tokens\n");
                goto done;
            }
            k = loom_tokenizer_encode(tok, texts[i], strlen(texts[i]),
                                      (loom_tokenizer_wants_bos(tok) ? LOOM_TOK_ADD_BOS : 0) |
                                          (ro->special ? LOOM_TOK_PARSE_SPECIAL : 0),
                                      &prompts[n]);
            if (k < 0) fprintf(stderr, "loom: prompt %d: %s\n", i + 1, loom_last_error());
        } else {
            k = parse_tokens(tok_args[i - n_texts], &prompts[n]);
        }
        if (k < 0) goto done;
        lens[n++] = k;
        if (k == 0) {
            fprintf(stderr, "loom: prompt %d is empty\n", n);
            goto done;
        }
    }
    loom_session_opts so = loom_common_session_opts(co);
    so.verbose = true;
    if (!(s = loom_session_new(m, &so))) {
        fprintf(stderr, "loom: %s\n", loom_last_error());
        goto done;
    }
    ro->tok = ro->print_ids ? NULL : tok;
    double t0 = loom_now();
    if (run_multi(s, ro, prompts, lens, n, loom_model_get_info(m).n_vocab) < 0) {
        fprintf(stderr, "loom: %s\n", loom_last_error());
        goto done;
    }
    fprintf(stderr, "loom: %d prompts in %.3f s on %s\n", n, loom_now() - t0, loom_session_device(s));
    rc = 0;
done:
    loom_session_free(s);
    for (int i = 0; i < n; i++) free(prompts[i]);
    return rc;
}

int cmd_run(int argc, char **argv) {
    loom_common_opts co;
    loom_common_defaults(&co);
    const char *prompt = NULL, *tokens_arg = NULL;
    const char *texts[MAX_PROMPTS], *tok_args[MAX_PROMPTS], *prompt_file = NULL, *lines_file = NULL;
    const char *stops[RUN_MAX_STOP];
    int n_texts = 0, n_tok_args = 0, n_stops = 0;
    long parallel = 1, beams = 0;
    double length_penalty = 1.0;
    bool early_stopping = false;
    long n_gen = 64, n_keep = 1;
    loom_sampling_args sa = {.temp = 0, .top_p = 1, .rep = 1, .top_k = 0, .last_n = 64, .seed = 1};
    loom_opt sampling_rows[LOOM_SAMPLING_ROWS];
    loom_sampling_rows(sampling_rows, &sa);
    bool print_ids = false, ctx_shift = false, json = false, special = false, version = false;
    loom_textbuf out = {0}; /* the generated text (for --stop and --json); freed at done (every error path) */
    const loom_opt opts[] = {
        {.names = "-p|--prompt",
         .type = LOOM_OPT_LIST,
         .arg = "TEXT",
         .help = "prompt text (needs the model's tokenizer); repeated: one sequence each",
         .hi = MAX_PROMPTS,
         .dst = texts,
         .count = &n_texts},
        {.names = "-f|--file",
         .type = LOOM_OPT_STR,
         .arg = "FILE",
         .help = "the prompt is the whole of FILE (one trailing newline dropped)",
         .dst = &prompt_file},
        {.names = "--tokens",
         .type = LOOM_OPT_LIST,
         .arg = "LIST",
         .help = "prompt as comma-separated token ids; repeated: one sequence each",
         .hi = MAX_PROMPTS,
         .dst = tok_args,
         .count = &n_tok_args},
        {.names = "--special",
         .type = LOOM_OPT_FLAG,
         .help = "match special tokens (<|im_start|>, <s>, ...) in the prompt text\n"
                 "instead of reading them as plain text",
         .dst = &special},
        {.names = "-n",
         .type = LOOM_OPT_INT,
         .arg = "N",
         .help = "tokens to generate",
         .lo = 0,
         .hi = 1 << 24,
         .dst = &n_gen},
        {.names = "--stop",
         .type = LOOM_OPT_LIST,
         .arg = "TEXT",
         .help = "stop when the text contains TEXT (left out of the output)",
         .hi = RUN_MAX_STOP,
         .dst = stops,
         .count = &n_stops},
        {.names = "--ids", .type = LOOM_OPT_FLAG, .help = "print token ids instead of text", .dst = &print_ids},
        {.names = "--json",
         .type = LOOM_OPT_FLAG,
         .help = "print one JSON object at the end (prompt, text, token ids, finish reason,\n"
                 "timings) instead of streaming text",
         .dst = &json},
        {.names = "--version", .type = LOOM_OPT_FLAG, .help = "print loom's version and exit", .dst = &version},
        {.type = LOOM_OPT_INCLUDE, .dst = sampling_rows},
        LOOM_OPT_HEADING("a full context:"),
        {.names = "--ctx-shift",
         .type = LOOM_OPT_FLAG,
         .help = "when the context is full, drop the oldest half of it (after --keep)\n"
                 "and re-rotate the cached keys that stay, instead of stopping",
         .dst = &ctx_shift},
        {.names = "--keep",
         .type = LOOM_OPT_INT,
         .arg = "N",
         .help = "tokens kept at the start on a context shift (1: BOS; at most --ctx - 2)",
         .lo = 0,
         .hi = 0x7fffffffL,
         .dst = &n_keep},
        LOOM_OPT_HEADING("several sequences at once (one graph per step; results printed as [i] or [i.j]):"),
        {.names = "--prompts-file",
         .type = LOOM_OPT_STR,
         .arg = "FILE",
         .help = "one prompt per non-empty line of FILE",
         .dst = &lines_file},
        {.names = "--parallel",
         .type = LOOM_OPT_INT,
         .arg = "N",
         .help = "N sampled continuations of each prompt, sharing its cached prefix",
         .lo = 1,
         .hi = 256,
         .dst = &parallel},
        {.names = "--beams",
         .type = LOOM_OPT_INT,
         .arg = "K",
         .help = "beam search (as transformers' num_beams=K, do_sample=False); prints\n"
                 "the K best with their scores (0 = off)",
         .lo = 0,
         .hi = 64,
         .dst = &beams},
        {.names = "--length-penalty",
         .type = LOOM_OPT_NUM,
         .arg = "L",
         .help = "beam score = sum log p / generated_len^L",
         .lo = -100,
         .hi = 100,
         .dst = &length_penalty},
        {.names = "--early-stopping",
         .type = LOOM_OPT_FLAG,
         .help = "stop once K beams have finished",
         .dst = &early_stopping},
        LOOM_OPT_END,
    };
    int prc = loom_opts_parse("run", "[-m MODEL] (-p TEXT | -f FILE | --tokens ID,ID,...) [options]", NULL, opts, &co, argc,
                              argv);
    if (prc >= 0) return prc;
    if (version) {
        printf("loom %s\n", LOOM_VERSION);
        return 0;
    }
    /* options that would be silently ignored: an empty stop string never matches (serve refuses
     * one too), beam search neither samples nor runs --parallel continuations */
    for (int i = 0; i < n_stops; i++)
        if (!*stops[i]) {
            fprintf(stderr, "loom run: --stop needs a non-empty TEXT\n");
            return 2;
        }
    const char *conflict = beams > 0 && parallel > 1 ? "--beams and --parallel do not combine (beam search keeps K beams of each prompt)"
                           : beams > 0 && sa.temp > 0 ? "--beams searches deterministically (transformers' do_sample=False): --temp does not apply"
                           : !beams && (length_penalty != 1.0 || early_stopping) ? "--length-penalty and --early-stopping need --beams"
                           : NULL;
    if (conflict) {
        fprintf(stderr, "loom run: %s\n", conflict);
        return 2;
    }
    loom_sampler_opts sampling = loom_sampling_opts(&sa);
    if (n_texts) prompt = texts[n_texts - 1];
    if (n_tok_args) tokens_arg = tok_args[n_tok_args - 1];
    char *whole = NULL;
    if (prompt_file) {
        if (n_texts == MAX_PROMPTS) {
            fprintf(stderr, "loom run: more than %d prompts\n", MAX_PROMPTS);
            return 2;
        }
        if (!(whole = read_whole_file(prompt_file))) {
            fprintf(stderr, "loom run: -f %s\n", loom_last_error());
            return 2;
        }
        prompt = texts[n_texts++] = whole;
    }
    char *file_buf = NULL;
    if (lines_file && read_prompt_file(lines_file, texts, &n_texts, &file_buf) < 0) {
        fprintf(stderr, "loom run: %s\n", loom_last_error());
        free(file_buf);
        free(whole);
        return 2;
    }
    if (n_texts + n_tok_args > 1 || parallel > 1 || beams > 0) {
        const char *single = ctx_shift ? "--ctx-shift" : json ? "--json" : n_stops ? "--stop" : NULL;
        if (single) {
            fprintf(stderr, "loom run: %s works with one sequence only\n", single);
            free(file_buf);
            free(whole);
            return 2;
        }
        const char *mpath = loom_model_path(&co);
        loom_model *mm = loom_model_load(mpath);
        if (!mm) {
            fprintf(stderr, "loom: %s\n", loom_last_error());
            free(file_buf);
            return 1;
        }
        loom_tokenizer *tk = loom_tokenizer_load(mpath);
        run_multi_opts ro = {.print_ids = print_ids || !tk, .n_gen = (int)n_gen,
                             .eos_id = loom_model_get_info(mm).eos_id,
                             .sampler = sampling, .special = special,
                             .parallel = (int)parallel, .beams = (int)beams, .length_penalty = (float)length_penalty,
                             .early_stopping = early_stopping};
        int r = run_several(mm, tk, &co, texts, n_texts, tok_args, n_tok_args, &ro);
        loom_tokenizer_free(tk);
        loom_model_free(mm);
        free(file_buf);
        free(whole);
        return r;
    }
    if (lines_file && n_texts == 1) prompt = texts[0];
    if (!prompt && !tokens_arg) {
        fprintf(stderr, "loom run: give a prompt with -p TEXT, -f FILE or --tokens ID,...\n");
        free(file_buf);
        return 2;
    }
    const char *path = loom_model_path(&co);
    int rc = 1;
    int32_t *ids = NULL, *hist = NULL, *gen_ids = NULL;
    loom_tokenizer *tok = NULL;
    loom_session *s = NULL;
    loom_sampler *smp = NULL;
    loom_tokenizer_stream *stream = NULL;
    loom_model *m = loom_model_load(path);
    if (!m) {
        fprintf(stderr, "loom: %s\n", loom_last_error());
        free(file_buf);
        free(whole);
        return 1;
    }
    loom_model_info info = loom_model_get_info(m);
    tok = loom_tokenizer_load(path);
    if (!tok && (prompt || !print_ids)) {
        if (prompt) {
            fprintf(stderr, "loom: %s has no usable tokenizer (%s): use --tokens\n", path, loom_last_error());
            goto done;
        }
        print_ids = true; /* no tokenizer: print ids */
    }
    int n;
    if (prompt && !*prompt) {
        fprintf(stderr, "loom: the prompt is empty\n");
        goto done;
    }
    if (prompt) {
        unsigned fl = (loom_tokenizer_wants_bos(tok) ? LOOM_TOK_ADD_BOS : 0) | (special ? LOOM_TOK_PARSE_SPECIAL : 0);
        n = loom_tokenizer_encode(tok, prompt, strlen(prompt), fl, &ids);
        if (n < 0) {
            fprintf(stderr, "loom: prompt: %s\n", loom_last_error());
            goto done;
        }
    } else {
        n = parse_tokens(tokens_arg, &ids);
        if (n < 0) goto done;
    }
    if (n == 0) {
        fprintf(stderr, "loom: the prompt is empty\n");
        goto done;
    }
    loom_session_opts so = loom_common_session_opts(&co);
    so.verbose = true;
    s = loom_session_new(m, &so);
    if (!s) {
        fprintf(stderr, "loom: %s\n", loom_last_error());
        goto done;
    }
    /* said once the cache exists, so that a --ctx too large for memory gets its one error line */
    if (co.n_ctx > info.n_ctx_train && info.n_ctx_train > 0)
        fprintf(stderr, "loom run: warning: --ctx %d exceeds the model's training context (%d tokens): expect worse text past it\n",
                co.n_ctx, info.n_ctx_train);
    if (n > loom_session_ctx(s)) {
        fprintf(stderr, "loom: the prompt has %d tokens but the context holds %d (raise --ctx)\n", n,
                loom_session_ctx(s));
        goto done;
    }
    /* the tokens the cache holds, for re-evaluation after a context shift */
    int n_hist = 0, shifts = 0;
    if (ctx_shift) {
        /* a shift drops half of what follows the kept tokens: at least 2 must follow. Re-rotating the
         * cached keys costs a pass over the rows that stay; re-evaluating them (a model that cannot
         * rotate, or LOOM_CTX_SHIFT=reeval) costs a prefill, so there --keep is bounded to half the
         * context (a shift then frees at least a quarter of it; --keep 29 of 32 re-evaluated the
         * context every token) */
        if (n_keep > loom_session_ctx(s) - 2) {
            fprintf(stderr, "loom: --keep %ld leaves nothing to drop from a context of %d tokens (at most %d)\n", n_keep,
                    loom_session_ctx(s), loom_session_ctx(s) - 2);
            goto done;
        }
        if (!loom_session_shift_rotates(s) && n_keep > loom_session_ctx(s) / 2) {
            fprintf(stderr, "loom: --keep %ld is more than half the context (%d tokens): this model's --ctx-shift "
                            "re-evaluates the kept tokens, and every shift would re-evaluate nearly all of it\n",
                    n_keep, loom_session_ctx(s));
            goto done;
        }
        if (!(hist = malloc((size_t)loom_session_ctx(s) * sizeof *hist))) {
            fprintf(stderr, "loom: out of memory for the token history\n");
            goto done;
        }
        memcpy(hist, ids, (size_t)n * sizeof *hist);
        n_hist = n;
    }
    smp = loom_sampler_new(&sampling);
    if (tok && !print_ids) stream = loom_tokenizer_stream_new(tok, LOOM_TOK_SKIP_SPECIAL);
    gen_ids = malloc(((size_t)n_gen + 1) * sizeof *gen_ids);
    if (!smp || !gen_ids || (tok && !print_ids && !stream)) {
        fprintf(stderr, "loom: %s\n", loom_last_error());
        goto done;
    }
    for (int i = 0; i < n; i++) loom_sampler_accept(smp, ids[i]); /* the penalties see the prompt too */
    if (json) {
        /* nothing on stdout until the end */
    } else if (tok && !print_ids) {
        size_t len;
        char *text = loom_tokenizer_decode(tok, ids, (size_t)n, LOOM_TOK_SKIP_SPECIAL, &len);
        if (text) fwrite(text, 1, len, stdout);
        free(text);
    } else {
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    }
    fflush(stdout);
    double t0 = loom_now();
    if (loom_session_eval(s, ids, n) < 0) {
        fprintf(stderr, "\nloom: %s\n", loom_last_error());
        goto done;
    }
    double t_prompt = loom_now() - t0;
    int generated = 0;
    const char *stop = NULL, *finish = "length", *stop_hit = NULL;
    size_t shown = 0;       /* bytes of it printed */
    t0 = loom_now();
    for (; generated < n_gen; generated++) {
        const float *logits = loom_session_logits(s, NULL);
        int32_t next = loom_sampler_sample(smp, logits, info.n_vocab);
        if (next < 0) {
            fprintf(stderr, "\nloom: generation step %d (position %d): %s\n", generated + 1, loom_session_pos(s),
                    loom_last_error());
            goto done;
        }
        bool eog = tok ? loom_tokenizer_is_eog(tok, next) : next == info.eos_id;
        if (eog) {
            stop = "end of sequence";
            finish = "stop";
            break;
        }
        gen_ids[generated] = next;
        if (stream) {
            size_t len, from = out.len;
            const char *piece = loom_tokenizer_stream_put(stream, next, &len);
            if (piece && loom_textbuf_add(&out, piece, len) < 0) {
                fprintf(stderr, "\nloom: out of memory\n");
                goto done;
            }
            size_t cut, safe;
            int k = loom_stop_scan(out.s, out.len, from, stops, n_stops, &cut, &safe);
            if (k >= 0) {
                out.len = cut;
                safe = cut;
            }
            if (!json) fwrite(out.s + shown, 1, safe - shown, stdout);
            shown = safe;
            if (k >= 0) {
                stop = "stop string";
                stop_hit = stops[k];
                finish = "stop";
                generated++;
                break;
            }
        } else if (!json) {
            printf(" %d", next);
        }
        fflush(stdout);
        if (loom_session_pos(s) >= loom_session_ctx(s)) {
            if (!ctx_shift) {
                stop = "context full";
                finish = "context";
                generated++;
                break;
            }
            if (loom_session_ctx_shift(s, hist, &n_hist, (int)n_keep) < 0) {
                fprintf(stderr, "\nloom: %s\n", loom_last_error());
                goto done;
            }
            shifts++;
        }
        if (loom_session_eval(s, &next, 1) < 0) {
            fprintf(stderr, "\nloom: %s\n", loom_last_error());
            goto done;
        }
        if (hist) hist[n_hist++] = next;
    }
    if (stream && !stop_hit) {
        size_t len;
        const char *rest = loom_tokenizer_stream_finish(stream, &len);
        if (rest && loom_textbuf_add(&out, rest, len) < 0) {
            fprintf(stderr, "\nloom: out of memory\n");
            goto done;
        }
    }
    if (!json && stream) fwrite(out.s + shown, 1, out.len - shown, stdout);
    double t_gen = loom_now() - t0;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        if (prompt) cJSON_AddStringToObject(o, "prompt", prompt);
        else cJSON_AddNullToObject(o, "prompt");
        cJSON_AddItemToObject(o, "prompt_tokens", cJSON_CreateIntArray(ids, n));
        if (stream) cJSON_AddStringToObject(o, "text", out.s ? out.s : "");
        else cJSON_AddNullToObject(o, "text");
        cJSON_AddItemToObject(o, "tokens", cJSON_CreateIntArray(gen_ids, generated));
        cJSON_AddStringToObject(o, "finish_reason", finish);
        if (stop_hit) cJSON_AddStringToObject(o, "stop", stop_hit);
        else cJSON_AddNullToObject(o, "stop");
        cJSON_AddNumberToObject(o, "context_shifts", shifts);
        cJSON *t = cJSON_AddObjectToObject(o, "timings");
        cJSON_AddNumberToObject(t, "prompt_s", t_prompt);
        cJSON_AddNumberToObject(t, "generate_s", t_gen);
        cJSON_AddNumberToObject(t, "prompt_tokens_per_s", n / (t_prompt > 0 ? t_prompt : 1e-9));
        cJSON_AddNumberToObject(t, "generate_tokens_per_s", generated / (t_gen > 0 ? t_gen : 1e-9));
        cJSON_AddStringToObject(o, "device", loom_session_device(s));
        char *js = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!js) {
            fprintf(stderr, "loom: out of memory\n");
            loom_textbuf_free(&out);
            goto done;
        }
        printf("%s", js);
        free(js);
    }
    loom_textbuf_free(&out);
    printf("\n");
    fflush(stdout);
    char shifted[48] = "";
    if (shifts) snprintf(shifted, sizeof shifted, " (%d context shifts)", shifts);
    fprintf(stderr, "loom: %s; prompt %d tokens in %.3f s (%.1f t/s), generated %d tokens%s in %.3f s (%.1f t/s) on %s\n",
            stop ? stop : "token limit", n, t_prompt, n / (t_prompt > 0 ? t_prompt : 1e-9), generated, shifted, t_gen,
            generated / (t_gen > 0 ? t_gen : 1e-9), loom_session_device(s));
    rc = 0;
done:
    loom_textbuf_free(&out);
    free(file_buf);
    free(whole);
    free(gen_ids);
    loom_tokenizer_stream_free(stream);
    loom_sampler_free(smp);
    loom_session_free(s);
    loom_tokenizer_free(tok);
    loom_model_free(m);
    free(ids);
    free(hist);
    return rc;
}
