# loom serve (docs/serving.md), on the bundled model, bound to 127.0.0.1 on a port the server
# picks (--port 0). curl and node are on the test machines; the openai npm package is installed
# by tools/install-deps.sh into .npm-deps (the test tries npm itself, and skips with 77 if it can't).
find_program(LOOM_NODE node)
if(NOT LOOM_NODE)
  set(LOOM_NODE node) # not found: the tests fail saying so (tools/install-deps.sh installs nodejs)
endif()
set(LOOM_SERVE_MODEL ${CMAKE_SOURCE_DIR}/weights/stories260K.gguf)
add_test(NAME serve_curl COMMAND ${LOOM_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/serve_curl.mjs ${LOOM_BIN} ${LOOM_SERVE_MODEL})
add_test(NAME serve_determinism COMMAND ${LOOM_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/serve_determinism.mjs ${LOOM_BIN}
  ${LOOM_SERVE_MODEL})
add_test(NAME serve_openai COMMAND ${LOOM_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/serve_openai.mjs ${LOOM_BIN}
  ${LOOM_SERVE_MODEL} ${CMAKE_SOURCE_DIR}/.npm-deps)
# prefix reuse across requests: cached counts, the same texts as --no-prefix-cache, eviction
add_test(NAME serve_prefix COMMAND ${LOOM_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/serve_prefix.mjs ${LOOM_BIN} ${LOOM_SERVE_MODEL})
set_tests_properties(serve_curl serve_determinism serve_openai serve_prefix PROPERTIES TIMEOUT 240)
set_tests_properties(serve_openai PROPERTIES SKIP_RETURN_CODE 77)
# two replicas behind nginx (docs/serving.md's configuration); nginx is optional: skipped (77) without it
add_test(NAME serve_nginx COMMAND ${LOOM_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/serve_nginx.mjs ${LOOM_BIN} ${LOOM_SERVE_MODEL})
set_tests_properties(serve_nginx PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77)
# Tool calls: the reply parser (whole, streamed a byte at a time, malformed, several calls) and the
# request fields; the prompts are test_chat's.
loom_unit_test(test_serve_tools ${CMAKE_SOURCE_DIR}/tools/serve_tools.c ${CMAKE_SOURCE_DIR}/tools/serve_req.c)
# ... and end to end: 400 on a format without tools, Qwen3's prompt (token counts), and with the
# engine's LOOM_SERVE_TEST_REPLY hook, calls plain and streamed, malformed, required/named, a round trip.
add_test(NAME serve_tools COMMAND ${LOOM_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/scripts/serve_tools.mjs ${LOOM_BIN} ${LOOM_SERVE_MODEL})
set_tests_properties(serve_tools PROPERTIES TIMEOUT 240)
