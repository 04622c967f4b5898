/* loom — the command-line front end. Each subcommand lives in tools/cmd_NAME.c. */
#include "tools/commands.h"

#include "core/util.h"

#include <stdio.h>
#include <signal.h>
#include <string.h>

#ifdef LOOM_SANITIZE_EXIT
/* The sanitizer build (`make asan`): a sanitizer report (ASan, LeakSanitizer, UBSan) ends loom with
 * status 134, as an abort does, not with the sanitizers' default 1, which is loom's own error status:
 * otherwise a test expecting loom to fail (`test $? -eq 1`, `expect.sh --rc 1`) passed on a leak or an
 * overflow in an error path. Options the caller sets (ASAN_OPTIONS, ...) still apply on top. */
const char *__asan_default_options(void);
const char *__ubsan_default_options(void);
const char *__lsan_default_options(void);
const char *__asan_default_options(void) { return "exitcode=134"; }
const char *__ubsan_default_options(void) { return "exitcode=134"; }
const char *__lsan_default_options(void) { return "exitcode=134"; }
#endif

static const loom_command commands[] = {
    {"run", "generate tokens from a prompt", cmd_run},
    {"check", "compare a model's outputs with a reference.safetensors", cmd_check},
    {"bench", "prompt-processing and generation speed (llama-bench style)", cmd_bench},
    {"convert", "convert a HuggingFace checkpoint to GGUF", cmd_convert},
    {"quantize", "rewrite a checkpoint with block-quantised matrices (llama.cpp presets)", cmd_quantize},
    {"synth", "write a random-weight GGUF of a real model shape", cmd_synth},
    {"dump", "print the graph as declared and after each planner pass", cmd_dump},
    {"serve", "an OpenAI-style HTTP server with continuous batching", cmd_serve},
    {"chat", "an interactive conversation (history kept in the KV cache)", cmd_chat},
    {"profile", "time every node of a prefill and decode steps; op table, top nodes, trace", cmd_profile},
    {"diff", "run one graph on two devices and find the first node whose outputs differ", cmd_diff},
    {"tokenize", "show how a model's tokenizer splits a text into tokens", cmd_tokenize},
    {"devices", "list the CPU and Vulkan devices loom can run on", cmd_devices},
};

static void usage(FILE *f) {
    fprintf(f, "usage: loom COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`loom COMMAND --help` describes a command's options; `loom --version` prints the version.\n");
}

int main(int argc, char **argv) {
    loom_sigbus_install(); /* a model file truncated while mapped: an error naming it, not "Bus error" */
    /* a file-size limit (`ulimit -f`) reached by convert/quantize/synth: the write fails with EFBIG
     * and the writer says so (temporary file removed, OUT untouched), instead of a SIGXFSZ death */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("loom %s\n", LOOM_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].main(argc - 1, argv + 1);
    fprintf(stderr, "loom: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
