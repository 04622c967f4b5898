# loom run's and loom chat's options (tools/options.c tables): --stop, --json, --special, -f, --version,
# the trained-context warning, values named in errors; chat's commands, context shift and Ctrl-C.
add_test(NAME run_cli COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/scripts/run_cli.sh ${LOOM_BIN} ${LOOM_FIXTURES}/stories260K.gguf)
add_test(NAME chat_cli COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/scripts/chat_cli.sh ${LOOM_BIN} ${LOOM_FIXTURES}/stories260K.gguf)
set_tests_properties(run_cli chat_cli PROPERTIES TIMEOUT 120)
