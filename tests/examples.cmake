# The installed library (cmake/library.cmake): examples/simple.c and simple.cpp built through
# pkg-config against `cmake --install` into build/test-prefix, compared with `loom run`.
add_test(NAME examples_installed COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/scripts/examples.sh ${CMAKE_BINARY_DIR}
  ${CMAKE_SOURCE_DIR} ${LOOM_BIN} ${CMAKE_SOURCE_DIR}/weights/stories260K.gguf)
set_tests_properties(examples_installed PROPERTIES TIMEOUT 300)
# The sanitizer build's libloom carries ASan/UBSan calls: the examples must link the same runtimes.
if(LOOM_SANITIZE)
  set_tests_properties(examples_installed PROPERTIES
    ENVIRONMENT "LOOM_SAN_FLAGS=-fsanitize=address,undefined,float-cast-overflow")
endif()
