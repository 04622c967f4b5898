/* LLaMA (1, 2, 3, and TinyLlama-style checkpoints): the plain decoder.
 * Differences from the shared blocks: none in the graph; RoPE pair order depends on the file,
 * because llama.cpp's converter stores q/k rows in Meta's interleaved-pair order. */
#include "models/model.h"

#include "models/convert.h"

static int llama_hparams(loom_hparams *hp, const loom_source *src) {
    if (loom_read_hparams(hp, src) < 0) return -1;
    /* HF checkpoints permute q/k rows for rotate-half; GGUF files keep interleaved pairs */
    hp->rope_mode = loom_source_get_kind(src) == LOOM_SOURCE_GGUF ? LOOM_ROPE_NORM : LOOM_ROPE_NEOX;
    return 0;
}

/* llama.cpp's llama converter always writes the vocabulary size and the rotary dims */
static int llama_write_kv(struct gguf_writer *w, const char *arch, const loom_hparams *hp) {
    bool hd_differs = hp->head_dim != hp->n_embd / hp->n_head || hp->n_embd % hp->n_head;
    if (loom_gguf_w_u32(w, arch, "vocab_size", hp->n_vocab)) return -1;
    return hd_differs ? 0 : loom_gguf_w_u32(w, arch, "rope.dimension_count", hp->head_dim);
}

static const char *const llama_names[] = {"llama", "LlamaForCausalLM", NULL};

const loom_arch loom_arch_llama = {
    .name = "llama",
    .aliases = llama_names,
    .read_hparams = llama_hparams,
    .build = loom_build_decoder,
    .gguf_qk_interleaved = true,
    .write_kv = llama_write_kv,
};
