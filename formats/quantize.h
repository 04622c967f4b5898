/* loom quantize: rewrite a checkpoint with block-quantised matrices (core/qblock.h). */
#ifndef LOOM_QUANTIZE_H
#define LOOM_QUANTIZE_H

#include <stdio.h>

/* in: a GGUF (f32/f16/bf16, or already quantised: re-quantised from its dequantised values) or a
 * HF directory (converted to a temporary GGUF first). type: "q8_0", "q4_0", "q4_k_m", "q6_k", or "f32" (every matrix dequantised to f32: the exact values a quantised
 * file holds, for comparing backends without the CPU's 8-bit activations).
 * 1-D tensors are written f32; 2-D matrices get the type (q4_k_m: Q6_K for the head and some
 * attn_v / ffn_down, Q4_K elsewhere) when their inner dimension is whole blocks, else the fallback
 * (Q4_K -> Q4_0, Q6_K -> Q8_0, then f16), and each fallback is noted on `log` (NULL: quiet).
 * Every metadata key is carried over; general.file_type becomes llama.cpp's. Returns 0, or -1 with
 * an error naming the file. */
int loom_quantize(const char *in, const char *out, const char *type, FILE *log);

#endif
