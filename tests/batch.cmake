# Several sequences at once (issue 7, docs/batching.md): the CLI side. The numerics are in
# test_batch (batch vs alone, fork, pool) and test_beam (transformers' beam search), core.cmake.

# Three prompts decoded together print, labelled, what each prints alone (greedy); --prompts-file equals
# -p repeated; --parallel 3 at temperature 0 gives three copies of the greedy continuation.
set(_m ${CMAKE_SOURCE_DIR}/weights/stories260K.gguf)
foreach(c multi file parallel)
  add_test(NAME run_batch_${c} COMMAND ${LOOM_EXPECT} --match "^ok" --
           ${CMAKE_CURRENT_SOURCE_DIR}/scripts/batch_cli.sh ${c} ${LOOM_BIN} ${_m})
endforeach()

# 9 rows at once: a 5 + 4 token batched prefill and 9 sequences decoding. The CPU's gemv_rows once
# split 9 as 8 + 1 and wrote past its output (test_ops covers the kernel for every row count).
add_test(NAME run_batch_9_rows COMMAND ${LOOM_EXPECT} --match "\\[2\\] The dog.*\\[1\\.9\\] Once.*both-ran-ok" --
         sh -c "${LOOM_BIN} run -m ${_m} -p 'Once upon a time' -p 'The dog' -n 8 -t 2 --device cpu && ${LOOM_BIN} run -m ${_m} -p Once --parallel 9 -n 8 -t 2 --device cpu && echo both-ran-ok")

# --beams on the HF stories260K matches transformers' best beam (beam_reference.safetensors,
# b4_r4_lp1_es0: the top score is -0.110949).
add_test(NAME run_beams COMMAND ${LOOM_EXPECT} --match "\\[1\\] score=-0\\.1109[45]" --
         ${LOOM_BIN} run -m ${LOOM_FIXTURES}/stories260K-hf --tokens 1,403,407,261,378 -n 12 --beams 4 --ids -t 2 --device cpu)

# bench -b: aggregate records with n_seq in the JSON.
add_test(NAME bench_batch_json COMMAND ${LOOM_EXPECT} --match "\"n_gen\": 8.*\"n_seq\": 3" --
         ${LOOM_BIN} bench -m ${_m} -p 8 -n 8 -b 1,3 -r 1 -t 2 --device cpu --json)

set(EXPECT_ERROR ${CMAKE_CURRENT_SOURCE_DIR}/scripts/expect_error.sh)
add_test(NAME err_run_beams_ctx_full COMMAND ${EXPECT_ERROR} "KV cache full"
         ${LOOM_BIN} run -m ${_m} -p "Once upon a time" -n 40 --beams 4 --ctx 32 --device cpu -t 2)
add_test(NAME err_run_parallel_ctx_shift COMMAND ${EXPECT_ERROR} "one sequence only"
         ${LOOM_BIN} run -m ${_m} -p "Hi" --parallel 2 --ctx-shift)
