/* fuzz_tokenizer_json: tokenizer.json [SEP tokenizer_config.json] through
 * loom_tokenizer_from_json_file (which reads the config beside it), then every use the tools make
 * of a tokenizer. */
#include "fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) {
    const uint8_t *part[FZ_MAX_PARTS];
    size_t len[FZ_MAX_PARTS];
    int k = fz_split(d, n, part, len);
    const char *js = fz_file(0, "tokenizer.json", part[0], len[0]);
    fz_file(1, "tokenizer_config.json", k > 1 ? part[1] : NULL, k > 1 ? len[1] : 0);
    loom_tokenizer *t = loom_tokenizer_from_json_file(js);
    if (t) fz_exercise_tokenizer(t);
    else fz_failed("loom_tokenizer_from_json_file");
    loom_tokenizer_free(t);
    return 0;
}
