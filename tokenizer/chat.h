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

/* ---- tool calls (OpenAI function calling) ------------------------------------------------------
 * The convention a model was trained on for tools: how the tools are listed, how its calls look,
 * and how their results come back. Each is one loom_chat_tools_conv (data, a render function; the
 * reply scanner in tools/serve_tools.c works from the data):
 *   - Hermes style of Qwen2.5 / Qwen3: ChatML turns, tools as JSON lines inside <tools></tools> in
 *     the system turn, calls as <tool_call>{json}</tool_call>, results in a user turn as
 *     <tool_response>...</tool_response>; the two differ in the system text and the spacing of
 *     calls in earlier replies (their published chat templates).
 *   - Llama 3.1 / 3.2 / 3.3 JSON tool calling: the system turn says "Environment: ipython" and the
 *     knowledge/today dates, the tools (json.dumps indent 4) and an instruction go into the first
 *     user message, a call is a bare {"name": ..., "parameters": {...}} (maybe after
 *     <|python_tag|>), one per assistant message, results are `ipython` turns (as JSON strings).
 *     3.1 / 3.3's templates date the system turn "26 Jul 2024"; 3.2's with today's date.
 *   - Mistral's "v3" tool calling (Mistral 7B Instruct v0.3, Mistral Nemo, Mistral Large 2407):
 *     [INST] turns, the tools as one JSON list in [AVAILABLE_TOOLS]...[/AVAILABLE_TOOLS] before the
 *     last user message, the system message in front of the last message when that is a user's
 *     (nowhere otherwise), calls as [TOOL_CALLS] followed by a JSON list of {"name", "arguments",
 *     "id"}, results as [TOOL_RESULTS] {"content": ..., "call_id": ...}[/TOOL_RESULTS]; call ids
 *     are 9 letters or digits. v0.3's template puts a space after [INST], [TOOL_CALLS],
 *     [AVAILABLE_TOOLS], [TOOL_RESULTS] and before a trimmed reply; Nemo's (tekken) puts none. */
typedef enum loom_chat_tools {
    LOOM_TOOLS_NONE,    /* the format has no tool convention loom knows */
    LOOM_TOOLS_QWEN3,   /* Qwen3's template (also Hermes-style ChatML templates without Qwen2.5's default system) */
    LOOM_TOOLS_QWEN25,  /* Qwen2.5's: "You are Qwen, created by Alibaba Cloud. ..." when there is no system message */
    LOOM_TOOLS_LLAMA31, /* Llama 3.1 / 3.3 Instruct's template: "Today Date: 26 Jul 2024" */
    LOOM_TOOLS_LLAMA32, /* Llama 3.2 Instruct's: today's date (strftime_now), LOOM_CHAT_DATE overrides it */
    LOOM_TOOLS_MISTRAL_V3,   /* Mistral 7B Instruct v0.3's template ("[INST] ", "[TOOL_CALLS] [") */
    LOOM_TOOLS_MISTRAL_NEMO, /* Mistral Nemo Instruct 2407's ("[INST]", "[TOOL_CALLS][", no spaces) */
    LOOM_TOOLS_COUNT
} loom_chat_tools;

struct loom_chat_turn;
typedef struct loom_chat_tools_conv {
    const char *name;            /* --chat-format name: "qwen3", "qwen2.5", "llama3.1", "llama3.2", "mistral-v3",
                                  * "mistral-nemo" */
    loom_chat_format format;     /* the turn format it goes with */
    /* a call in a reply: it starts with call_open (may be NULL) or, when bare_json, with a JSON
     * object whose first key is "name" (or "type"); it ends with call_close, or (NULL) where its
     * JSON object ends (then a ';' between calls is skipped). Its JSON has a string "name" and an
     * object "arguments" or "parameters". */
    const char *call_open, *call_close;
    bool bare_json;
    bool call_list;              /* Mistral: call_open is followed by a JSON list of calls (no call_close) */
    int id_len;                  /* call ids must be this many ASCII letters and digits (0: any id) */
    const char *required_prefix; /* the reply is started with this for tool_choice "required" */
    const char *named_prefix;    /* ... and with this (%s: the function) for a named tool_choice */
    int max_calls_per_message;   /* an assistant message sent back with more is refused (0: no limit) */
    const char *default_system;  /* Hermes: the system text when there is no system message (Qwen2.5's,
                                  * whose template also starts every call in a reply on a new line) */
    const char *fixed_date;      /* Llama: the system turn's "Today Date" (NULL: today's) */
    /* the conversation (loom_chat_render_tools' contract, messages already checked) */
    char *(*render)(const struct loom_chat_tools_conv *c, const struct loom_chat_turn *msgs, size_t n,
                    const char *const *tools, size_t n_tools, const char *reply_prefix);
} loom_chat_tools_conv;

/* The convention's description; NULL for LOOM_TOOLS_NONE or out of range. */
const loom_chat_tools_conv *loom_chat_tools_get(loom_chat_tools t);
/* The convention of a --chat-format name ("qwen3", "llama3.1", ...); LOOM_TOOLS_NONE if none. */
loom_chat_tools loom_chat_tools_from_name(const char *name);

/* The tool convention of turn format f whose Jinja template is template_str (may be NULL): a
 * ChatML template that writes <tool_call> is Hermes-style (Qwen2.5's when it carries Qwen2.5's
 * default system message); a Llama 3 template that knows the `ipython` role is Llama 3.1's JSON
 * tool calling (3.2's when it dates the system turn with strftime_now); an [INST] template (Mistral
 * or Llama 2 turns) that writes [TOOL_CALLS] followed by a JSON list and [TOOL_RESULTS] {"content":
 * is Mistral's v3 (v0.3's with the spaces, Nemo's without); anything else has none (Llama 3.0's
 * template among them, and Mistral's newer [TOOL_CALLS]name[ARGS]{...} templates: Small 3.2,
 * Ministral 3, Devstral). */
loom_chat_tools loom_chat_tools_detect(const char *template_str, loom_chat_format f);
const char *loom_chat_tools_name(loom_chat_tools t); /* "none", "qwen3", "qwen2.5", "llama3.1", "llama3.2", ... */

typedef struct loom_chat_call {
    const char *name;
    const char *arguments; /* JSON text, written into the prompt as it is */
    const char *id;        /* the call's id (NULL: none; Mistral's template needs one) */
} loom_chat_call;

typedef struct loom_chat_turn {
    const char *role;    /* "system", "user", "assistant" or "tool" (a call's result) */
    const char *content; /* "" when none (an assistant turn that only calls tools) */
    const loom_chat_call *calls; /* an assistant turn's tool calls */
    int n_calls;
    const char *call_id;         /* a tool message's tool_call_id (NULL: none; Mistral's template needs one) */
} loom_chat_turn;

/* A conversation with tools in convention t: tools[] are the tool definitions as JSON text,
 * serialised the way Python's json.dumps does (", " and ": "; Hermes writes each on its own line as
 * the template's `tool | tojson` does, Llama re-indents them as `tojson(indent=4)`). Ends with the
 * assistant's turn opened (or inside the last message when it is an assistant's without calls, to
 * continue it), then reply_prefix (may be NULL): text put in the model's mouth, e.g.
 * "<tool_call>\n" to make it call a tool. NULL with an error for LOOM_TOOLS_NONE, a bad role, no
 * user message, more calls in one assistant message than the convention takes, or (Mistral) a call
 * id that is not 9 letters or digits, or turns that do not alternate user / assistant (leaving
 * calls and results aside) as the template requires. */
char *loom_chat_render_tools(loom_chat_tools t, const loom_chat_turn *msgs, size_t n, const char *const *tools,
                             size_t n_tools, const char *reply_prefix);

#ifdef __cplusplus
}
#endif

#endif
