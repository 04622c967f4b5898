/* loom run with several sequences: several prompts, --parallel N, --beams K (tools/run_multi.c). */
#ifndef LOOM_RUN_MULTI_H
#define LOOM_RUN_MULTI_H

#include "loom.h"
#include "tokenizer/tokenizer.h"

typedef struct run_multi_opts {
    const loom_tokenizer *tok; /* NULL: print ids */
    bool print_ids;
    int n_gen, eos_id;
    loom_sampler_opts sampler; /* each sequence gets seed + its index */
    int parallel;              /* continuations per prompt (sharing its cached prefix) */
    int beams;                 /* > 0: beam search with this many beams, all returned */
    float length_penalty;
    bool early_stopping;
    bool special;              /* prompts: match special tokens (--special) */
} run_multi_opts;

/* Generate for every prompt; results are printed as "[i] text" ("[i.j]" for the j-th of several
 * continuations or beams). Returns 0, or -1 with an error. */
int run_multi(loom_session *s, const run_multi_opts *o, int32_t *const *prompts, const int *lens, int n_prompts,
              int n_vocab);

#endif
