#include "tokenizer/chat.h"

#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

loom_chat_format loom_chat_detect(const char *t, const char *arch, bool has_im_start, bool has_header_tokens) {
    if (t) {
        if (strstr(t, "<|im_start|>")) return LOOM_CHAT_CHATML;
        if (strstr(t, "<|start_header_id|>")) return LOOM_CHAT_LLAMA3;
        if (strstr(t, "<start_of_turn>")) return LOOM_CHAT_GEMMA;
        if (strstr(t, "<|assistant|>") && strstr(t, "<|end|>")) return LOOM_CHAT_PHI3;
        /* [INST]: Llama 2's (<<SYS>> inside the first turn) unless the family is Mistral's */
        if (strstr(t, "[INST]"))
            return !strstr(t, "<<SYS>>") && loom_chat_format_from_name(arch) == LOOM_CHAT_MISTRAL ? LOOM_CHAT_MISTRAL
                                                                                             : LOOM_CHAT_LLAMA2;
    }
    if (has_im_start) return LOOM_CHAT_CHATML;
    if (has_header_tokens) return LOOM_CHAT_LLAMA3;
    if (arch && (!strncmp(arch, "gemma", 5))) return LOOM_CHAT_GEMMA;
    if (arch && !strcmp(arch, "mixtral")) return LOOM_CHAT_MISTRAL;
    return loom_chat_format_from_name(arch);
}

static const char *const format_names[] = {"none", "chatml", "llama2", "llama3", "gemma", "phi3", "mistral"};

const char *loom_chat_format_name(loom_chat_format f) {
    return f >= 0 && (size_t)f < sizeof format_names / sizeof format_names[0] ? format_names[f] : "none";
}

loom_chat_format loom_chat_format_from_name(const char *name) {
    for (size_t i = 0; name && i < sizeof format_names / sizeof format_names[0]; i++)
        if (!strcmp(name, format_names[i])) return (loom_chat_format)i;
    return LOOM_CHAT_NONE;
}

static char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

char *loom_chat_user_turn(loom_chat_format f, const char *system, const char *user, bool first, bool after_reply) {
    bool sys = first && system && *system;
    switch (f) {
    case LOOM_CHAT_CHATML:
        return fmt("%s%s%s%s<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", after_reply ? "<|im_end|>\n" : "",
                   sys ? "<|im_start|>system\n" : "", sys ? system : "", sys ? "<|im_end|>\n" : "", user);
    case LOOM_CHAT_LLAMA3:
        return fmt("%s%s%s%s<|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n",
                   after_reply ? "<|eot_id|>" : "", sys ? "<|start_header_id|>system<|end_header_id|>\n\n" : "",
                   sys ? system : "", sys ? "<|eot_id|>" : "", user);
    case LOOM_CHAT_LLAMA2:
        /* BOS starts every exchange in Llama 2's format; the first one comes from the tokenizer */
        if (sys) return fmt("[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", system, user);
        return fmt("%s[INST] %s [/INST]", after_reply ? " </s><s>" : "", user);
    case LOOM_CHAT_GEMMA: /* no system role: Gemma's template puts it before the first user message */
        return fmt("%s<start_of_turn>user\n%s%s%s<end_of_turn>\n<start_of_turn>model\n",
                   after_reply ? "<end_of_turn>\n" : "", sys ? system : "", sys ? "\n\n" : "", user);
    case LOOM_CHAT_PHI3:
        return fmt("%s%s%s%s<|user|>\n%s<|end|>\n<|assistant|>\n", after_reply ? "<|end|>\n" : "",
                   sys ? "<|system|>\n" : "", sys ? system : "", sys ? "<|end|>\n" : "", user);
    case LOOM_CHAT_MISTRAL: /* BOS from the tokenizer; the reply's </s> was generated, not evaluated */
        return fmt("%s[INST] %s%s%s [/INST]", after_reply ? "</s>" : "", sys ? system : "", sys ? "\n\n" : "", user);
    default:
        return fmt("%s%s%s", sys ? system : "", sys ? "\n" : "", user);
    }
}

loom_chat_format loom_chat_detect_tok(const loom_tokenizer *t, const char *family) {
    return loom_chat_detect(loom_tokenizer_chat_template(t), family, loom_tokenizer_find(t, "<|im_start|>", 12) >= 0,
                            loom_tokenizer_find(t, "<|start_header_id|>", 19) >= 0);
}

/* Append src to the growing string *dst (length *len); frees src. */
static int append(char **dst, size_t *len, char *src) {
    if (!src) return -1;
    size_t n = strlen(src);
    char *d = realloc(*dst, *len + n + 1);
    if (!d) {
        free(src);
        return -1;
    }
    memcpy(d + *len, src, n + 1);
    *dst = d;
    *len += n;
    free(src);
    return 0;
}

char *loom_chat_render(loom_chat_format f, const loom_chat_message *msgs, size_t n) {
    /* the system messages, joined, open the first turn */
    char *system = NULL, *out = NULL;
    size_t slen = 0, olen = 0;
    bool any_user = false;
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role, *c = msgs[i].content;
        if (!r || !c) return loom_err_null("chat: message %zu has no %s", i, r ? "content" : "role");
        if (!strcmp(r, "user")) any_user = true;
        else if (strcmp(r, "system") && strcmp(r, "assistant"))
            return loom_err_null("chat: message %zu has role '%s' (want system, user or assistant)", i, r);
    }
    if (!any_user) return loom_err_null("chat: the conversation has no user message");
    for (size_t i = 0; i < n; i++)
        if (!strcmp(msgs[i].role, "system") && append(&system, &slen, fmt("%s%s", slen ? "\n" : "", msgs[i].content)) < 0)
            goto oom;
    out = calloc(1, 1);
    if (!out) goto oom;
    bool first = true, after_reply = false;
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!strcmp(r, "user")) {
            if (append(&out, &olen, loom_chat_user_turn(f, system, msgs[i].content, first, after_reply)) < 0) goto oom;
            first = false;
            after_reply = false;
        } else if (!strcmp(r, "assistant") && !first) {
            /* a reply before any user turn has no place in these formats: left out */
            if (append(&out, &olen, fmt("%s", msgs[i].content)) < 0) goto oom;
            after_reply = true;
        }
    }
    free(system);
    return out;
oom:
    free(system);
    free(out);
    return loom_err_null("chat: out of memory");
}
