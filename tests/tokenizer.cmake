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
target_include_directories(bench_tokenizer PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bench_tokenizer PRIVATE loom)

# ---- loom tokenize ----
set(_tok_stories ${LOOM_FIXTURES}/stories260K.gguf)
set(_tok_spm ${LOOM_TOK_FIXTURES}/ggml-vocab-llama-spm.gguf)
add_test(NAME cli_tokenize_ids COMMAND ${LOOM_EXPECT} --match "^1 403 407 261 378\n$" --
         ${LOOM_BIN} tokenize -m ${_tok_stories} --ids -p "Once upon a time")
add_test(NAME cli_tokenize_no_bos COMMAND ${LOOM_EXPECT} --match "^403 407 261 378\n$" --
         ${LOOM_BIN} tokenize -m ${_tok_stories} --ids --no-bos -p "Once upon a time")
# stdin is taken byte for byte: the trailing newline is a token (198) and nothing is added
add_test(NAME cli_tokenize_stdin COMMAND ${LOOM_EXPECT} --match "^9707 1879 198\n$" --
         sh -c "printf 'Hello world\\n' | \"$0\" tokenize -m \"$1\" --ids" ${LOOM_BIN} ${LOOM_TOK_DATA}/qwen3)
add_test(NAME cli_tokenize_stdin_empty COMMAND ${LOOM_EXPECT} --match "^1\n$" --
         sh -c "\"$0\" tokenize -m \"$1\" --ids < /dev/null" ${LOOM_BIN} ${_tok_stories})
# pieces: escaped control bytes, half characters from byte fallback shown as \xNN
add_test(NAME cli_tokenize_pieces COMMAND ${LOOM_EXPECT} --match
  "^ +263 ' a'\n +12 '\\\\t'\n +29890 'b'\n +13 '\\\\n'\n +243 '\\\\xf0'\n +162 '\\\\x9f'\n +169 '\\\\xa6'\n +156 '\\\\x99'\n$"
  -- sh -c "printf 'a\\tb\\n\\360\\237\\246\\231' | \"$0\" tokenize -m \"$1\" --no-bos" ${LOOM_BIN} ${_tok_spm})
add_test(NAME cli_tokenize_special COMMAND ${LOOM_EXPECT} --match "^128009\n$" --
         ${LOOM_BIN} tokenize -m ${LOOM_TOK_DATA}/llama3/tokenizer.json --ids -p "<|eot_id|>")
add_test(NAME cli_tokenize_no_special COMMAND ${LOOM_EXPECT} --no-match "128009" --match "^[0-9 ]+\n$" --
         ${LOOM_BIN} tokenize -m ${LOOM_TOK_DATA}/llama3/tokenizer.json --ids --no-parse-special -p "<|eot_id|>")
# errors: a message naming the file and the problem, exit status 1 (2 for a usage error)
add_test(NAME cli_tokenize_bad_utf8 COMMAND ${LOOM_EXPECT} --rc 1
         --match "ggml-vocab-llama-spm.gguf: encode: input is not valid UTF-8 \\(byte 0xff at offset 2\\)"
         -- sh -c "printf 'ok\\377' | \"$0\" tokenize -m \"$1\"" ${LOOM_BIN} ${_tok_spm})
add_test(NAME cli_tokenize_no_tokenizer COMMAND ${LOOM_EXPECT} --rc 1 --match "llama-tiny: no tokenizer.json" --
         ${LOOM_BIN} tokenize -m ${LOOM_FIXTURES}/llama-tiny -p x)
add_test(NAME cli_tokenize_bad_option COMMAND ${LOOM_EXPECT} --rc 2 --match "unknown option '--frobnicate'" --
         ${LOOM_BIN} tokenize --frobnicate)
