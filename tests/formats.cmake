# Checkpoint formats (formats/): GGUF and safetensors readers, loom_source, convert and synth.
loom_unit_test(test_formats_gguf)
loom_unit_test(test_formats_st)
loom_unit_test(test_formats_source)
loom_unit_test(test_formats_convert)

# The commands: usage errors exit 2, bad input exits 1 with a message naming the file, and a
# successful run writes a GGUF that loads.
set(LOOM_FMT_TMP ${CMAKE_BINARY_DIR}/formats-cli)
file(MAKE_DIRECTORY ${LOOM_FMT_TMP})
add_test(NAME formats_cli_convert_usage COMMAND sh -c "${LOOM_BIN} convert onlyone; test $? -eq 2")
add_test(NAME formats_cli_convert_help COMMAND ${LOOM_EXPECT} --match "usage: loom convert HF_DIR OUT.gguf" --
         ${LOOM_BIN} convert --help)
add_test(NAME formats_cli_convert_missing
         COMMAND sh -c "${LOOM_BIN} convert ${LOOM_FMT_TMP}/no-such-dir ${LOOM_FMT_TMP}/x.gguf; test $? -eq 1")
add_test(NAME formats_cli_convert_missing_msg COMMAND ${LOOM_EXPECT} --rc 1 --match "loom convert: .*no-such-dir: cannot open" --
         ${LOOM_BIN} convert ${LOOM_FMT_TMP}/no-such-dir ${LOOM_FMT_TMP}/x.gguf)
add_test(NAME formats_cli_synth_usage COMMAND sh -c "${LOOM_BIN} synth --shape qwen2-0.5b; test $? -eq 2")
add_test(NAME formats_cli_synth_bad_dtype
         COMMAND sh -c "${LOOM_BIN} synth --shape qwen2-0.5b --dtype q4 -o ${LOOM_FMT_TMP}/x.gguf; test $? -eq 2")
add_test(NAME formats_cli_synth_bad_seed
         COMMAND sh -c "${LOOM_BIN} synth --shape qwen2-0.5b --seed -3 -o ${LOOM_FMT_TMP}/x.gguf; test $? -eq 2")
add_test(NAME formats_cli_synth_bad_shape COMMAND ${LOOM_EXPECT} --rc 1 --match "unknown shape 'gpt-9'" --
         ${LOOM_BIN} synth --shape gpt-9 -o ${LOOM_FMT_TMP}/x.gguf)
# synth from a fixture's config, then run the result: the file must load and generate
add_test(NAME formats_cli_synth_run COMMAND sh -c
  "${LOOM_BIN} synth --shape ${LOOM_FIXTURES}/llama-tiny/config.json --dtype bf16 --seed 7 -o ${LOOM_FMT_TMP}/synth.gguf && ${LOOM_BIN} bench -m ${LOOM_FMT_TMP}/synth.gguf -p 8 -n 4 -r 1 --device cpu -t 1")
