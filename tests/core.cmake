# Core unit tests: the planner.
loom_unit_test(test_planner)

# loom dump: the final plan's summary, and the JSON form (checked by cJSON in test_dump_json).
add_test(NAME dump_text COMMAND ${LOOM_EXPECT} --match "summary: [0-9]+ nodes declared.*fused groups, arena" --
         ${LOOM_BIN} dump -m ${LOOM_FIXTURES}/qwen2-tiny --seq 5)
add_test(NAME dump_all_passes COMMAND ${LOOM_EXPECT} --match "== declared.*== dce.*== cse.*== fuse.*== memory" --
         ${LOOM_BIN} dump -m ${LOOM_FIXTURES}/llama-tiny --phase decode --after all)
loom_unit_test(test_sampler)
# The sampler against the exact distribution: chi-square over 10^5 seeded draws per configuration.
loom_unit_test(test_sampler_dist)
loom_unit_test(test_chat)

# loom chat keeps the history in the KV cache: the second turn prefills only its own tokens.
add_test(NAME chat_keeps_history COMMAND ${LOOM_EXPECT} --match "turn 2: prefilled [1-9][0-9]* new tokens \\(cache held [1-9][0-9]*\\)" --
         sh -c "printf 'Once upon a time\\nThe dog\\n' | $<TARGET_FILE:loom-cli> chat -m ${LOOM_FIXTURES}/stories260K.gguf --verbose -n 8 --temp 0 --device cpu")

# Several sequences: batch vs alone on every fixture, fork / copy on write, pool cycles, errors.
loom_unit_test(test_batch)
loom_unit_test(test_ring_kv) # windowed layers' ring caches vs full caches (models/session.c)
# Beam search against transformers' generate(num_beams=K) on every fixture, four configurations.
loom_unit_test(test_beam)
