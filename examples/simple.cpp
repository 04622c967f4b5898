// examples/simple.c from C++: the same program with RAII owners, against the same installed loom.
//
//   c++ simple.cpp $(pkg-config --cflags --libs loom) -o simple_cpp
//   ./simple_cpp MODEL.gguf "Once upon a time" 64
#include <loom.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

template <class T, void (*F)(T *)> struct deleter {
    void operator()(T *p) const { F(p); }
};
template <class T, void (*F)(T *)> using owned = std::unique_ptr<T, deleter<T, F>>;

static int fail() {
    std::fprintf(stderr, "simple_cpp: %s\n", loom_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s MODEL PROMPT N_TOKENS\n", argv[0]);
        return 2;
    }
    const std::string path = argv[1], prompt = argv[2];
    const int n_gen = std::atoi(argv[3]);
    owned<loom_model, loom_model_free> model(loom_model_load(path.c_str()));
    if (!model) return fail();
    owned<loom_tokenizer, loom_tokenizer_free> tok(loom_tokenizer_load(path.c_str()));
    if (!tok) return fail();
    loom_session_opts so = loom_session_default_opts();
    so.device = "cpu";
    owned<loom_session, loom_session_free> s(loom_session_new(model.get(), &so));
    if (!s) return fail();
    loom_sampler_opts greedy{};
    owned<loom_sampler, loom_sampler_free> smp(loom_sampler_new(&greedy));
    owned<loom_tokenizer_stream, loom_tokenizer_stream_free> out(loom_tokenizer_stream_new(tok.get(), LOOM_TOK_SKIP_SPECIAL));
    if (!smp || !out) return fail();

    int32_t *raw = nullptr;
    unsigned flags = loom_tokenizer_wants_bos(tok.get()) ? LOOM_TOK_ADD_BOS : 0;
    int n = loom_tokenizer_encode(tok.get(), prompt.data(), prompt.size(), flags, &raw);
    if (n < 0) return fail();
    std::unique_ptr<int32_t, decltype(&std::free)> ids(raw, &std::free);
    if (loom_session_eval(s.get(), ids.get(), n) < 0) return fail();

    std::string text = prompt;
    for (int i = 0; i < n_gen; i++) {
        int32_t next = loom_sampler_sample(smp.get(), loom_session_logits(s.get(), nullptr), loom_tokenizer_n_vocab(tok.get()));
        if (next < 0 || loom_tokenizer_is_eog(tok.get(), next)) break;
        size_t len;
        const char *piece = loom_tokenizer_stream_put(out.get(), next, &len);
        if (!piece) return fail();
        text.append(piece, len);
        if (i + 1 < n_gen && loom_session_eval(s.get(), &next, 1) < 0) return fail();
    }
    size_t len;
    const char *rest = loom_tokenizer_stream_finish(out.get(), &len);
    text.append(rest, len);
    std::printf("%s\n", text.c_str());
    return 0;
}
