/* loom quantize: rewrite a checkpoint with block-quantised matrices (core/qblock.h). */
#ifndef LOOM_QUANTIZE_H
#define LOOM_QUANTIZE_H

#include <stdbool.h>
#include <stdio.h>

/* in: a GGUF (f32/f16/bf16, or already quantised: re-quantised from its dequantised values); a HF
 * directory goes through loom_quantize (models/convert.h), which converts it first. type: a
 * llama.cpp preset ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k_m", "q4_k_m", "q5_k_m",
 * "q6_k", "iq4_nl", "iq4_xs") or "f32" (every matrix dequantised to f32: the exact values a quantised
 * file holds, for comparing backends without the CPU's 8-bit activations).
 * The preset's type mix is llama.cpp's (the head Q6_K, more bits for some attn_v / ffn_down /
 * attn_output; pure: every matrix the base type), then its fallback for rows that are not whole
 * blocks (IQ4_XS -> IQ4_NL, Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then f16).
 * 1-D tensors are written f32; norms stay unquantised. Progress and a summary of the mix and the
 * fallbacks go to `log` (NULL: quiet). Every metadata key is carried over; general.file_type
 * becomes llama.cpp's. n_threads quantise the rows (<= 0: one per online CPU; at most
 * LOOM_QUANTIZE_MAX_THREADS); the file is the same for any count. Returns 0, or -1 with an error
 * naming the file. */
int loom_quantize_gguf(const char *in, const char *out, const char *type, bool pure, int n_threads, FILE *log);
#define LOOM_QUANTIZE_MAX_THREADS 256
/* The thread count loom_quantize_gguf uses for n_threads (<= 0: the online CPUs), clamped. */
int loom_quantize_threads(int n_threads);
/* The checks loom_quantize_gguf makes before any work: a known type, and an OUT that is not a
 * device, FIFO or folder. 0, or -1 with an error. */
int loom_quantize_check(const char *out, const char *type);
/* The type names loom_quantize takes, comma-separated. */
const char *loom_quantize_types(void);

#endif
