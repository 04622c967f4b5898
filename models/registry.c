/* The list of model files. Adding an architecture: write models/NAME.c defining loom_arch_NAME
 * and add it here. */
#include "models/model.h"

#include "core/util.h"

extern const loom_arch loom_arch_llama;
extern const loom_arch loom_arch_qwen2;
extern const loom_arch loom_arch_qwen3;
extern const loom_arch loom_arch_mistral;
extern const loom_arch loom_arch_phi3;
extern const loom_arch loom_arch_olmo2;
extern const loom_arch loom_arch_gemma;
extern const loom_arch loom_arch_gemma2;
extern const loom_arch loom_arch_gemma3;
extern const loom_arch loom_arch_qwen3moe;
extern const loom_arch loom_arch_mixtral;

static const loom_arch *const archs[] = {
    &loom_arch_llama,
    &loom_arch_qwen2,
    &loom_arch_qwen3,
    &loom_arch_mistral,
    &loom_arch_phi3,
    &loom_arch_olmo2,
    &loom_arch_gemma,
    &loom_arch_gemma2,
    &loom_arch_gemma3,
    &loom_arch_qwen3moe,
    &loom_arch_mixtral,
    NULL,
};

const loom_arch *const *loom_arch_list(void) { return archs; }

const loom_arch *loom_arch_find(const char *name) {
    if (!name) return NULL;
    for (int i = 0; archs[i]; i++)
        for (int j = 0; archs[i]->aliases[j]; j++)
            if (!strcmp(archs[i]->aliases[j], name)) return archs[i];
    return NULL;
}
