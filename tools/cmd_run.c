/* loom run: prefill a prompt, then decode and stream tokens until EOS or -n. */
#include "tools/commands.h"

#include "loom.h"
#include "tools/run_multi.h"
#include "models/session_internal.h"
#include "tokenizer/tokenizer.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: loom run [-m MODEL] (-p TEXT | --tokens ID,ID,...) [options]\n"
            "  -m MODEL        HF directory or .gguf (default: the bundled stories260K)\n"
            "  -p TEXT         prompt text (needs the model's tokenizer)\n"
            "  --tokens LIST   prompt as comma-separated token ids\n"
            "  -n N            tokens to generate (default 64)\n"
            "  --temp T        temperature (default 0 = greedy)\n"
            "  --top-k K       keep the K most likely tokens (default 0 = off)\n"
            "  --top-p P       nucleus sampling threshold (default 1 = off)\n"
            "  --seed S        sampling seed (default 1)\n"
            "  --ids           print token ids instead of text\n"
            "  --device D      cpu | vulkan | vulkan:N | auto (default auto)\n"
            "  -t N            CPU threads (default: all cores)\n"
            "  --ctx N         KV cache length (default min(training context, 4096))\n"
            "  --ctx-shift     when the context is full, drop the oldest half of it (after --keep)\n"
            "                  and re-evaluate the rest, instead of stopping\n"
            "  --keep N        tokens kept at the start on a context shift (default 1: BOS)\n"
            "  --scalar        portable scalar kernels only (also LOOM_SCALAR=1)\n"
            "several sequences at once (one graph per step; results printed as [i] or [i.j]):\n"
            "  -p TEXT ...     -p (or --tokens) repeated: one sequence per prompt\n"
            "  --file F        one prompt per line of F\n"
            "  --parallel N    N sampled continuations of each prompt, sharing its cached prefix\n"
            "  --beams K       beam search (as transformers' num_beams=K, do_sample=False); prints\n"
            "                  the K best with their scores\n"
            "  --length-penalty L  beam score = sum log p / generated_len^L (default 1)\n"
            "  --early-stopping    stop once K beams have finished\n");
}

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

/* Read one prompt per non-empty line of path into v (strings owned by *buf). */
static int read_prompt_file(const char *path, const char **v, int *n, char **buf) {
    FILE *f = fopen(path, "rb");
    if (!f) return loom_err("%s: cannot open", path);
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
    for (char *line = strtok(b, "\r\n"); line; line = strtok(NULL, "\r\n")) {
        if (!*line) continue;
        if (*n == MAX_PROMPTS) return loom_err("%s: more than %d prompts", path, MAX_PROMPTS);
        v[(*n)++] = line;
    }
    return 0;
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
                                      loom_tokenizer_wants_bos(tok) ? LOOM_TOK_ADD_BOS : 0, &prompts[n]);
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
    const char *texts[MAX_PROMPTS], *tok_args[MAX_PROMPTS], *file = NULL;
    int n_texts = 0, n_tok_args = 0;
    long parallel = 1, beams = 0;
    double length_penalty = 1.0;
    bool early_stopping = false;
    long n_gen = 64, seed = 1, top_k = 0;
    double temp = 0, top_p = 1;
    bool print_ids = false, ctx_shift = false;
    long n_keep = 1;
    for (int i = 1; i < argc; i++) {
        const char *a, *val;
        int rc, r = loom_next_opt(&co, argc, argv, &i, &a, &val, usage, &rc);
        if (r == LOOM_OPT_TAKEN) continue;
        if (r == LOOM_OPT_EXIT) return rc;
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!val) goto missing;
            if (n_texts == MAX_PROMPTS) goto too_many;
            prompt = texts[n_texts++] = argv[++i];
        } else if (!strcmp(a, "--tokens")) {
            if (!val) goto missing;
            if (n_tok_args == MAX_PROMPTS) goto too_many;
            tokens_arg = tok_args[n_tok_args++] = argv[++i];
        } else if (!strcmp(a, "--file")) {
            if (!val) goto missing;
            file = argv[++i];
        } else if (!strcmp(a, "--parallel")) {
            if (loom_parse_int(a, val, 1, 256, &parallel) < 0) return 2;
            i++;
        } else if (!strcmp(a, "--beams")) {
            if (loom_parse_int(a, val, 1, 64, &beams) < 0) return 2;
            i++;
        } else if (!strcmp(a, "--length-penalty")) {
            if (loom_parse_float(a, val, &length_penalty) < 0) return 2;
            i++;
        } else if (!strcmp(a, "--early-stopping")) {
            early_stopping = true;
        } else if (!strcmp(a, "-n")) {
            if (loom_parse_int(a, val, 0, 1 << 24, &n_gen) < 0) return 2;
            i++;
        } else if (!strcmp(a, "--temp")) {
            if (loom_parse_float(a, val, &temp) < 0) return 2;
            i++;
        } else if (!strcmp(a, "--top-k")) {
            if (loom_parse_int(a, val, 0, 1 << 30, &top_k) < 0) return 2;
            i++;
        } else if (!strcmp(a, "--top-p")) {
            if (loom_parse_float(a, val, &top_p) < 0) return 2;
            i++;
        } else if (!strcmp(a, "--seed")) {
            if (loom_parse_int(a, val, 0, 0x7fffffffL, &seed) < 0) return 2;
            i++;
        } else if (!strcmp(a, "--ids")) {
            print_ids = true;
        } else if (!strcmp(a, "--ctx-shift")) {
            ctx_shift = true;
        } else if (!strcmp(a, "--keep")) {
            if (loom_parse_int(a, val, 0, 0x7fffffffL, &n_keep) < 0) return 2;
            i++;
        } else {
            fprintf(stderr, "loom run: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        continue;
    missing:
        fprintf(stderr, "loom run: %s needs a value\n", a);
        return 2;
    too_many:
        fprintf(stderr, "loom run: more than %d prompts\n", MAX_PROMPTS);
        return 2;
    }
    char *file_buf = NULL;
    if (file && read_prompt_file(file, texts, &n_texts, &file_buf) < 0) {
        fprintf(stderr, "loom run: %s\n", loom_last_error());
        return 2;
    }
    if (n_texts + n_tok_args > 1 || parallel > 1 || beams > 0) {
        if (ctx_shift) {
            fprintf(stderr, "loom run: --ctx-shift works with one sequence only\n");
            free(file_buf);
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
                             .sampler = {.temperature = (float)temp, .top_k = (int)top_k, .top_p = (float)top_p,
                                         .seed = (uint64_t)seed},
                             .parallel = (int)parallel, .beams = (int)beams, .length_penalty = (float)length_penalty,
                             .early_stopping = early_stopping};
        int r = run_several(mm, tk, &co, texts, n_texts, tok_args, n_tok_args, &ro);
        loom_tokenizer_free(tk);
        loom_model_free(mm);
        free(file_buf);
        return r;
    }
    if (file && n_texts == 1) prompt = texts[0];
    if (!prompt && !tokens_arg) {
        fprintf(stderr, "loom run: give a prompt with -p TEXT or --tokens ID,...\n");
        return 2;
    }
    const char *path = loom_model_path(&co);
    int rc = 1;
    int32_t *ids = NULL, *hist = NULL;
    loom_tokenizer *tok = NULL;
    loom_session *s = NULL;
    loom_sampler *smp = NULL;
    loom_tokenizer_stream *stream = NULL;
    loom_model *m = loom_model_load(path);
    if (!m) {
        fprintf(stderr, "loom: %s\n", loom_last_error());
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
        n = loom_tokenizer_encode(tok, prompt, strlen(prompt), loom_tokenizer_wants_bos(tok) ? LOOM_TOK_ADD_BOS : 0, &ids);
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
    if (n > loom_session_ctx(s)) {
        fprintf(stderr, "loom: the prompt has %d tokens but the context holds %d (raise --ctx)\n", n,
                loom_session_ctx(s));
        goto done;
    }
    /* the tokens the cache holds, for re-evaluation after a context shift */
    int n_hist = 0, shifts = 0;
    if (ctx_shift) {
        if (n_keep > loom_session_ctx(s) - 2) {
            fprintf(stderr, "loom: --keep %ld leaves nothing to drop from a context of %d tokens\n", n_keep,
                    loom_session_ctx(s));
            goto done;
        }
        if (!(hist = malloc((size_t)loom_session_ctx(s) * sizeof *hist))) {
            fprintf(stderr, "loom: out of memory for the token history\n");
            goto done;
        }
        memcpy(hist, ids, (size_t)n * sizeof *hist);
        n_hist = n;
    }
    loom_sampler_opts sopt = {.temperature = (float)temp, .top_k = (int)top_k, .top_p = (float)top_p, .seed = (uint64_t)seed};
    smp = loom_sampler_new(&sopt);
    if (tok && !print_ids) stream = loom_tokenizer_stream_new(tok, LOOM_TOK_SKIP_SPECIAL);
    if (!smp || (tok && !print_ids && !stream)) {
        fprintf(stderr, "loom: %s\n", loom_last_error());
        goto done;
    }
    if (tok && !print_ids) {
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
    const char *stop = NULL;
    t0 = loom_now();
    for (; generated < n_gen; generated++) {
        const float *logits = loom_session_logits(s, NULL);
        int32_t next = loom_sampler_sample(smp, logits, info.n_vocab);
        bool eog = tok ? loom_tokenizer_is_eog(tok, next) : next == info.eos_id;
        if (eog) {
            stop = "end of sequence";
            break;
        }
        if (stream) {
            size_t len;
            const char *piece = loom_tokenizer_stream_put(stream, next, &len);
            if (piece) fwrite(piece, 1, len, stdout);
        } else {
            printf(" %d", next);
        }
        fflush(stdout);
        if (loom_session_pos(s) >= loom_session_ctx(s)) {
            if (!ctx_shift) {
                stop = "context full";
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
    if (stream) {
        size_t len;
        const char *rest = loom_tokenizer_stream_finish(stream, &len);
        if (rest) fwrite(rest, 1, len, stdout);
    }
    double t_gen = loom_now() - t0;
    printf("\n");
    fflush(stdout);
    char shifted[48] = "";
    if (shifts) snprintf(shifted, sizeof shifted, " (%d context shifts)", shifts);
    fprintf(stderr, "loom: %s; prompt %d tokens in %.3f s (%.1f t/s), generated %d tokens%s in %.3f s (%.1f t/s) on %s\n",
            stop ? stop : "token limit", n, t_prompt, n / (t_prompt > 0 ? t_prompt : 1e-9), generated, shifted, t_gen,
            generated / (t_gen > 0 ? t_gen : 1e-9), loom_session_device(s));
    rc = 0;
done:
    free(file_buf);
    loom_tokenizer_stream_free(stream);
    loom_sampler_free(smp);
    loom_session_free(s);
    loom_tokenizer_free(tok);
    loom_model_free(m);
    free(ids);
    free(hist);
    return rc;
}
