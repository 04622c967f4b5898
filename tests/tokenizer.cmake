# Tokenizer tests: llama.cpp's vectors on three vocabularies, API behaviour, and `loom tokenize`.
# The two tokenizer.json vocabularies are kept xz-compressed in tests/fixtures/tokenizer and
# decompressed into the build directory here (LOOM_TOK_DATA).
set(LOOM_TOK_FIXTURES ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/tokenizer)
set(LOOM_TOK_DATA ${CMAKE_BINARY_DIR}/tokenizer-data)
find_program(LOOM_XZ xz REQUIRED)

set(_tok_files)
foreach(v qwen3 llama3)
  set(_dst ${LOOM_TOK_DATA}/${v})
  add_custom_command(
    OUTPUT ${_dst}/tokenizer.json ${_dst}/tokenizer_config.json
    COMMAND ${CMAKE_COMMAND} -E make_directory ${_dst}
    COMMAND ${CMAKE_COMMAND} -DXZ=${LOOM_XZ} -DIN=${LOOM_TOK_FIXTURES}/${v}/tokenizer.json.xz
            -DOUT=${_dst}/tokenizer.json -P ${LOOM_TOK_FIXTURES}/unxz.cmake
    COMMAND ${CMAKE_COMMAND} -E copy ${LOOM_TOK_FIXTURES}/${v}/tokenizer_config.json ${_dst}/
    DEPENDS ${LOOM_TOK_FIXTURES}/${v}/tokenizer.json.xz ${LOOM_TOK_FIXTURES}/${v}/tokenizer_config.json
            ${LOOM_TOK_FIXTURES}/unxz.cmake
    COMMENT "Decompressing the ${v} tokenizer.json test vocabulary"
    VERBATIM)
  list(APPEND _tok_files ${_dst}/tokenizer.json ${_dst}/tokenizer_config.json)
endforeach()
add_custom_target(tok_fixtures ALL DEPENDS ${_tok_files})

set(_tok_env "LOOM_FIXTURES=${LOOM_FIXTURES};LOOM_TOK_DATA=${LOOM_TOK_DATA}")
foreach(t test_tok_vectors test_tok_api)
  loom_unit_test(${t})
  add_dependencies(${t} tok_fixtures)
  set_tests_properties(${t} PROPERTIES ENVIRONMENT "${_tok_env}" TIMEOUT 60)
endforeach()

# Speed figure, not a test: bench_tokenizer MODEL [TEXT_FILE]
add_executable(bench_tokenizer ${CMAKE_SOURCE_DIR}/tokenizer/bench/bench_tokenizer.c)
target_include_directories(bench_tokenizer PRIVATE ${CMAKE_SOURCE_DIR}/tokenizer)
target_link_libraries(bench_tokenizer PRIVATE loom)
