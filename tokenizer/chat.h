/* Chat templates: the turn formats of the model families loom knows, rendered one turn at a time
 * so a conversation's history stays in the KV cache (each turn appends only its own tokens).
 *
 * The family is recognised from the checkpoint's Jinja template (GGUF tokenizer.chat_template or
 * tokenizer_config.json chat_template) by its marker tokens; loom does not run Jinja. */
#ifndef LOOM_CHAT_H
#define LOOM_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "loom.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum loom_chat_format {
    LOOM_CHAT_NONE,   /* no template: turns are plain text */
    LOOM_CHAT_CHATML, /* Qwen2 / Qwen2.5: <|im_start|>role\n...<|im_end|>\n */
    LOOM_CHAT_LLAMA2, /* [INST] ... [/INST], <<SYS>> inside the first turn */
    LOOM_CHAT_LLAMA3, /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    LOOM_CHAT_GEMMA,  /* <start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n (no system role) */
    LOOM_CHAT_PHI3,   /* <|system|>\n...<|end|>\n<|user|>\n...<|end|>\n<|assistant|>\n */
    LOOM_CHAT_MISTRAL,/* [INST] ...[/INST] ... </s>, the system prompt before the first user message */
} loom_chat_format;

/* Pick the format from a template string (may be NULL) and, when that says nothing, from whether
 * the vocabulary has the family's marker tokens, then from `arch`: the model family's default
 * format name (loom_arch.chat_format: "gemma", "phi3", "mistral") or its architecture name. */
loom_chat_format loom_chat_detect(const char *template_str, const char *arch, bool has_im_start,
                                  bool has_header_tokens);
const char *loom_chat_format_name(loom_chat_format f);
/* The format of a name loom_chat_format_name returns; LOOM_CHAT_NONE for NULL or unknown. */
loom_chat_format loom_chat_format_from_name(const char *name);

/* Text for the next user turn, ending where the assistant's reply begins. `first` is true for the
 * conversation's first turn (which carries the system prompt, if any, and BOS where the format
 * spells it out); `after_reply` is true when an assistant reply precedes this turn, whose
 * end-of-turn marker was generated but never evaluated and so is written here. Returns a
 * malloc'd string, or NULL when out of memory. */
char *loom_chat_user_turn(loom_chat_format f, const char *system, const char *user, bool first, bool after_reply);

/* loom_chat_detect from a tokenizer's template and vocabulary, then the model family's default
 * (loom_model_chat_family; NULL when unknown). */
loom_chat_format loom_chat_detect_tok(const loom_tokenizer *t, const char *family);
/* loom_chat_apply (include/loom.h) with the format given. */
char *loom_chat_render(loom_chat_format f, const loom_chat_message *msgs, size_t n);

#ifdef __cplusplus
}
#endif

#endif
