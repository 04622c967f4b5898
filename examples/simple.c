/* The smallest program that embeds loom: load a model, tokenize a prompt, generate greedily and
 * print the text as it comes. Only the public header is used; build it against an installed loom:
 *
 *   cc simple.c $(pkg-config --cflags --libs loom) -o simple
 *   ./simple MODEL.gguf "Once upon a time" 64
 */
#include <loom.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL PROMPT N_TOKENS\n", argv[0]);
        return 2;
    }
    const char *path = argv[1], *prompt = argv[2];
    int n_gen = atoi(argv[3]), rc = 1;
    loom_model *model = loom_model_load(path);
    loom_tokenizer *tok = model ? loom_tokenizer_load(path) : NULL;
    loom_session_opts so = loom_session_default_opts();
    so.device = "cpu";
    loom_session *s = tok ? loom_session_new(model, &so) : NULL;
    loom_sampler_opts sampling = {.temperature = 0}; /* greedy */
    loom_sampler *smp = s ? loom_sampler_new(&sampling) : NULL;
    loom_tokenizer_stream *out = smp ? loom_tokenizer_stream_new(tok, LOOM_TOK_SKIP_SPECIAL) : NULL;
    int32_t *ids = NULL;
    int n = out ? loom_tokenizer_encode(tok, prompt, strlen(prompt), loom_tokenizer_wants_bos(tok) ? LOOM_TOK_ADD_BOS : 0, &ids)
                : -1;
    if (n < 0 || loom_session_eval(s, ids, n) < 0) goto done;
    fputs(prompt, stdout);
    for (int i = 0; i < n_gen; i++) {
        int32_t next = loom_sampler_sample(smp, loom_session_logits(s, NULL), loom_tokenizer_n_vocab(tok));
        if (next < 0 || loom_tokenizer_is_eog(tok, next)) break;
        size_t len;
        const char *text = loom_tokenizer_stream_put(out, next, &len); /* whole UTF-8 characters only */
        if (!text) goto done;
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        if (i + 1 < n_gen && loom_session_eval(s, &next, 1) < 0) goto done;
    }
    size_t len;
    const char *rest = loom_tokenizer_stream_finish(out, &len);
    fwrite(rest, 1, len, stdout);
    putchar('\n');
    rc = 0;
done:
    if (rc) fprintf(stderr, "simple: %s\n", loom_last_error());
    free(ids);
    loom_tokenizer_stream_free(out);
    loom_sampler_free(smp);
    loom_session_free(s);
    loom_tokenizer_free(tok);
    loom_model_free(model);
    return rc;
}
