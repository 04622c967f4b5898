/* The architecture layer (models/hparams.c, names.c, convert.c): one parser for loading and for
 * `loom convert`, so a HF directory and its converted GGUF generate the same tokens, including a
 * Llama-3 rope_scaling without "factor" (it used to load with 1 and convert with 8); bad configs
 * (unknown hidden_act, unsupported rope scaling, inconsistent experts) are one error naming the key,
 * the same from both paths; tensor names map both ways. */
#include "models/convert.h"
#include "models/model.h"
#include "tests/unit/test_formats_util.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <math.h>


/* Greedy ids after a fixed prompt, and the last step's logits (n_vocab floats into last). */
static int greedy(const char *path, int32_t *out, int n_new, float *last, int n_vocab) {
    loom_model *m = loom_model_load(path);
    if (!m) return -1;
    loom_session_opts o = loom_session_default_opts();
    o.device = "cpu";
    o.n_threads = 1;
    o.n_ctx = 64;
    loom_session *s = loom_session_new(m, &o);
    int rc = s ? 0 : -1;
    int32_t toks[8] = {1, 17, 42, 99, 7, 250, 3, 11};
    if (!rc) rc = loom_session_eval(s, toks, 8);
    for (int i = 0; !rc && i < n_new; i++) {
        const float *lg = loom_session_logits(s, NULL);
        int best = 0;
        for (int v = 1; v < n_vocab; v++)
            if (lg[v] > lg[best]) best = v;
        out[i] = best;
        memcpy(last, lg, (size_t)n_vocab * sizeof(float));
        rc = loom_session_eval(s, &out[i], 1);
    }
    loom_session_free(s);
    loom_model_free(m);
    return rc;
}

static void edit_llama3_no_factor(cJSON *c) { /* rope_scaling as older configs have it, no "factor" */
    cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
    cJSON_AddStringToObject(rs, "rope_type", "llama3");
    cJSON_AddNumberToObject(rs, "original_max_position_embeddings", 64);
}
static void edit_llama3_factor1(cJSON *c) {
    edit_llama3_no_factor(c);
    cJSON_AddNumberToObject(cJSON_GetObjectItem(c, "rope_scaling"), "factor", 1.0);
}

static void test_hf_equals_gguf(void) {
    enum { NEW = 12, V = 512 };
    tf_hf_with_config("l3", "llama-tiny", edit_llama3_no_factor);
    tf_hf_with_config("l3f1", "llama-tiny", edit_llama3_factor1);
    CHECK(loom_convert_hf_to_gguf(TMP("l3"), TMP("l3.gguf")) == 0, "convert: %s", loom_last_error());
    /* both paths read the same hyper-parameters: llama.cpp's default factor 8 */
    loom_model *hm = loom_model_load(TMP("l3")), *gm = loom_model_load(TMP("l3.gguf"));
    CHECK(hm && gm, "load: %s", loom_last_error());
    if (hm && gm) {
        CHECK(hm->hp.rope_scaling == LOOM_ROPE_SCALING_LLAMA3 && hm->hp.rope_factor == 8.0f, "HF factor %g",
              hm->hp.rope_factor);
        CHECK(hm->rope_freqs && gm->rope_freqs && hm->rope_freqs->ne[0] == 8 && gm->rope_freqs->ne[0] == 8,
              "both have rope factors");
        if (hm->rope_freqs && gm->rope_freqs) {
            CHECK(!memcmp(hm->rope_freqs->data, gm->rope_freqs->data, 8 * sizeof(float)),
                  "the same factors, computed once");
            CHECK(((const float *)hm->rope_freqs->data)[7] == 8.0f, "the longest wavelength divided by 8");
        }
    }
    loom_model_free(hm);
    loom_model_free(gm);

    int32_t a[NEW], b[NEW], c[NEW];
    static float la[V], lb[V], lc[V];
    CHECK(greedy(TMP("l3"), a, NEW, la, V) == 0, "HF run: %s", loom_last_error());
    CHECK(greedy(TMP("l3.gguf"), b, NEW, lb, V) == 0, "GGUF run: %s", loom_last_error());
    CHECK(!memcmp(a, b, sizeof a), "HF directory and converted GGUF generate the same tokens");
    float err = 0, diff = 0;
    for (int v = 0; v < V; v++) err = fmaxf(err, fabsf(la[v] - lb[v]));
    CHECK(err < 1e-4f, "same logits after %d steps (max abs diff %g)", NEW, err);
    /* the test can fail: scaling by 1 instead of 8 (the old HF reading) changes the logits */
    CHECK(greedy(TMP("l3f1"), c, NEW, lc, V) == 0, "factor 1 run: %s", loom_last_error());
    for (int v = 0; v < V; v++) diff = fmaxf(diff, fabsf(la[v] - lc[v]));
    CHECK(diff > 100 * err && diff > 1e-3f, "factor 8 vs 1 differ by %g (HF vs GGUF %g)", diff, err);
}

/* ---- bad configs: one error naming the key, from loading and from convert alike ------------- */

static void edit_gelu_exact(cJSON *c) { cJSON_ReplaceItemInObject(c, "hidden_act", cJSON_CreateString("gelu")); }
static void edit_yarn(cJSON *c) {
    cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
    cJSON_AddStringToObject(rs, "rope_type", "yarn");
    cJSON_AddNumberToObject(rs, "factor", 4.0);
}
static void edit_llama3_bad_band(cJSON *c) {
    edit_llama3_no_factor(c);
    cJSON_AddNumberToObject(cJSON_GetObjectItem(c, "rope_scaling"), "high_freq_factor", 0.5);
}
static void edit_experts_used(cJSON *c) {
    cJSON_AddNumberToObject(c, "num_local_experts", 4);
    cJSON_AddNumberToObject(c, "num_experts_per_tok", 5);
}
static void edit_experts_zero_used(cJSON *c) {
    cJSON_AddNumberToObject(c, "num_experts", 8);
    cJSON_AddNumberToObject(c, "moe_intermediate_size", 32);
}
static void edit_experts_width(cJSON *c) {
    cJSON_AddNumberToObject(c, "num_experts", 8);
    cJSON_AddNumberToObject(c, "num_experts_per_tok", 2);
    cJSON_AddNumberToObject(c, "moe_intermediate_size", 0);
}
static void edit_layer_types(cJSON *c) { /* local, global, local, ... is fine; this is neither form */
    cJSON_AddNumberToObject(c, "sliding_window", 8);
    cJSON *lt = cJSON_AddArrayToObject(c, "layer_types");
    cJSON_AddItemToArray(lt, cJSON_CreateString("full_attention"));
    cJSON_AddItemToArray(lt, cJSON_CreateString("bogus"));
}

static void test_bad_configs(void) {
    static const struct { const char *dir; void (*edit)(cJSON *); const char *key, *also; } bad[] = {
        {"gelu", edit_gelu_exact, "hidden_act", "'gelu'"},
        {"yarn", edit_yarn, "rope_scaling", "'yarn'"},
        {"band", edit_llama3_bad_band, "rope_scaling.high_freq_factor", "low_freq_factor"},
        {"used", edit_experts_used, "num_experts_per_tok", "num_local_experts"},
        {"used0", edit_experts_zero_used, "num_experts_per_tok", "= 0"},
        {"width", edit_experts_width, "moe_intermediate_size", "positive"},
        {"ltypes", edit_layer_types, "layer_types[1]", "sliding_attention"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tf_hf_with_config(bad[i].dir, "llama-tiny", bad[i].edit);
        loom_err_clear();
        loom_model *m = loom_model_load(TMP("%s", bad[i].dir));
        const char *e = loom_last_error();
        CHECK(!m && strstr(e, bad[i].key) && strstr(e, bad[i].also) && strstr(e, "config.json") && !strchr(e, '\n'),
              "%s: load error names '%s': %s", bad[i].dir, bad[i].key, e);
        loom_model_free(m);
        char first[512];
        snprintf(first, sizeof first, "%s", e);
        loom_err_clear();
        CHECK(loom_convert_hf_to_gguf(TMP("%s", bad[i].dir), TMP("%s.gguf", bad[i].dir)) != 0 &&
                  !strcmp(loom_last_error(), first),
              "%s: convert gives the same error: %s", bad[i].dir, loom_last_error());
        CHECK(access(TMP("%s.gguf", bad[i].dir), F_OK) != 0, "%s: no output file", bad[i].dir);
    }
}

/* ---- names ----------------------------------------------------------------------------------- */

static void test_names(void) {
    const loom_arch *const *all = loom_arch_list();
    int n = 0;
    for (int i = 0; all[i]; i++, n++) {
        const loom_arch *a = all[i];
        CHECK(loom_arch_find(a->name) == a, "%s is found by its name", a->name);
        CHECK(a->read_hparams && a->build, "%s has a parser and a graph", a->name);
        /* every pair maps both ways, and no two HF names share a GGUF name within a family */
        for (const loom_name_pair *p = a->names; p && p->hf; p++) {
            char hf[128], g[128], back[128];
            snprintf(hf, sizeof hf, "model.layers.3.%s", p->hf);
            CHECK(loom_arch_hf_to_gguf(a, hf, g, sizeof g) && loom_arch_gguf_to_hf(a, g, back, sizeof back) &&
                      !strcmp(back, hf),
                  "%s: %s -> %s -> %s", a->name, hf, g, back);
        }
    }
    CHECK(n >= 3, "%d families", n);
    char g[96];
    const loom_arch *llama = loom_arch_find("llama");
    CHECK(loom_arch_hf_to_gguf(llama, "model.layers.11.post_attention_layernorm.weight", g, sizeof g) &&
              !strcmp(g, "blk.11.ffn_norm.weight"),
          "llama: post_attention_layernorm is the MLP's norm (%s)", g);
}

/* ---- mixture-of-experts weights: one tensor per expert in HF, stacked as llama.cpp's ------------ */

static void test_experts_stacked(void) {
    static const struct { const char *fx, *hf_fmt; int n_exp, ff; } moe[] = {
        {"qwen3moe-tiny", "model.layers.1.mlp.experts.%d.up_proj.weight", 8, 32},
        {"mixtral-tiny", "model.layers.1.block_sparse_moe.experts.%d.w3.weight", 4, 128},
    };
    for (size_t f = 0; f < sizeof moe / sizeof moe[0]; f++) {
        const loom_arch *a = NULL;
        loom_hparams hp;
        loom_source *src = loom_arch_open(FIX("%s", moe[f].fx), &a, &hp);
        loom_source *raw = loom_source_open(FIX("%s", moe[f].fx));
        CHECK(src && raw, "%s: %s", moe[f].fx, loom_last_error());
        if (!src || !raw) {
            loom_source_close(src);
            loom_source_close(raw);
            continue;
        }
        CHECK(hp.n_expert == moe[f].n_exp && hp.n_expert_used == 2 && hp.expert_norm_topk && hp.n_ff_exp == moe[f].ff,
              "%s: %d experts, top %d, ff %d", moe[f].fx, hp.n_expert, hp.n_expert_used, hp.n_ff_exp);
        const loom_weight *up = loom_source_find(src, "blk.1.ffn_up_exps.weight");
        CHECK(up && up->ndim == 3 && up->ne[0] == moe[f].n_exp && up->ne[1] == moe[f].ff && up->ne[2] == 64,
              "%s: ffn_up_exps [E, F, D]", moe[f].fx);
        for (int e = 0; up && e < moe[f].n_exp; e++) {
            char name[128];
            snprintf(name, sizeof name, moe[f].hf_fmt, e);
            const loom_weight *w = loom_source_find(raw, name);
            CHECK(w && !memcmp((const char *)up->data + (size_t)e * w->nbytes, w->data, w->nbytes),
                  "%s: expert %d is slice %d", moe[f].fx, e, e);
            CHECK(!loom_source_find(src, name), "%s: %s left the table", moe[f].fx, name);
        }
        for (int i = 0; i < loom_source_n_tensors(src); i++)
            CHECK(loom_source_tensor(src, i)->id == i, "%s: ids dense after stacking", moe[f].fx);
        CHECK(loom_source_find(src, "blk.0.ffn_gate_inp.weight") != NULL, "%s: router named", moe[f].fx);
        loom_source_close(src);
        loom_source_close(raw);
    }
}

int main(void) {
    tf_init();
    test_names();
    test_hf_equals_gguf();
    test_bad_configs();
    test_experts_stacked();
    tf_cleanup();
    CHECK_DONE();
}
