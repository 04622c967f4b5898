/* Gemma 3 (text): Gemma 2 without the attention soft-cap, plus an RMSNorm over each head of q and
 * k (1 + w, like every Gemma norm), and two RoPE bases: rope_local_base_freq (10000) on the
 * sliding-window layers, rope_theta (1e6) on the global ones, which come every
 * sliding_window_pattern-th layer (6 in the released models; layer_types in transformers 5). */
#include "models/model.h"

#include "core/util.h"

int loom_gemma2_hparams(loom_hparams *hp, const loom_source *src, int n_layer_27b);
int loom_gemma2_write_kv(struct gguf_writer *w, const char *arch, const loom_hparams *hp);
extern const loom_name_pair loom_gemma2_tensors[]; /* the same sandwich-norm names */

static int gemma3_hparams(loom_hparams *hp, const loom_source *src) {
    if (loom_gemma2_hparams(hp, src, 62) < 0) return -1;
    hp->qk_norm = LOOM_QK_NORM_HEAD;
    /* transformers 4 keys; 5 nests them per layer type (read by the shared parser) */
    if (hp->rope_theta_local == 0 && loom_hp_float(src, "rope_local_base_freq", NULL, &hp->rope_theta_local, 0) < 0)
        return -1;
    if (hp->rope_theta_local == 0) hp->rope_theta_local = 10000; /* llama.cpp's, when a GGUF has no key */
    if (hp->n_swa > 0 && hp->swa_pattern == 0 && hp->swa_first == 0 &&
        loom_hp_int(src, "sliding_window_pattern", NULL, &hp->swa_pattern, 6) < 0) /* llama.cpp's 6 */
        return -1;
    if (hp->swa_pattern < 0) return loom_err("%s: sliding_window_pattern must be positive", loom_source_config_path(src));
    return 0;
}

static const char *const gemma3_names[] = {"gemma3", "gemma3_text", "Gemma3ForCausalLM", NULL};

const loom_arch loom_arch_gemma3 = {
    .name = "gemma3",
    .aliases = gemma3_names,
    .read_hparams = gemma3_hparams,
    .build = loom_build_decoder,
    .names = loom_gemma2_tensors,
    .norm_plus_one = true,
    .write_kv = loom_gemma2_write_kv,
    .chat_format = "gemma",
};
