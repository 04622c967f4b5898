# Core unit tests: the planner.
loom_unit_test(test_planner)

# loom dump: the final plan's summary, and the JSON form (checked by cJSON in test_dump_json).
add_test(NAME dump_text COMMAND ${LOOM_BIN} dump -m ${LOOM_FIXTURES}/qwen2-tiny --seq 5)
set_tests_properties(dump_text PROPERTIES PASS_REGULAR_EXPRESSION "summary: [0-9]+ nodes declared.*fused groups, arena")
add_test(NAME dump_all_passes COMMAND ${LOOM_BIN} dump -m ${LOOM_FIXTURES}/llama-tiny --phase decode --after all)
set_tests_properties(dump_all_passes PROPERTIES PASS_REGULAR_EXPRESSION "== declared.*== dce.*== cse.*== fuse.*== memory")
loom_unit_test(test_sampler)
loom_unit_test(test_chat)

# loom chat keeps the history in the KV cache: the second turn prefills only its own tokens.
add_test(NAME chat_keeps_history COMMAND sh -c "printf 'Once upon a time\\nThe dog\\n' | $<TARGET_FILE:loom-cli> chat -m ${LOOM_FIXTURES}/stories260K.gguf --verbose -n 8 --temp 0 --device cpu")
set_tests_properties(chat_keeps_history PROPERTIES PASS_REGULAR_EXPRESSION "turn 2: prefilled [1-9][0-9]* new tokens \\(cache held [1-9][0-9]*\\)")

# Several sequences: batch vs alone on every fixture, fork / copy on write, pool cycles, errors.
loom_unit_test(test_batch)
# Beam search against transformers' generate(num_beams=K) on every fixture, four configurations.
loom_unit_test(test_beam)
