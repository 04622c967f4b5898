# cmake -DLOOM=BIN -DIN=PEER.gguf -DOUT=OUT.gguf -DBYTES=N -DSHA=HEX -P peer_dequant.cmake
# Dequantises a llama-quantize file with `loom quantize --type f32` and compares the last BYTES
# bytes of the output (the tensor data) with the SHA-256 of the peer's own dequantisation
# (`llama-quantize --allow-requantize IN OUT F32`, tests/fixtures/peer-quant/README.md), taken
# over the lowercase hex text of those bytes (as CMake's file(READ HEX) gives them).
execute_process(COMMAND ${LOOM} quantize ${IN} ${OUT} --type f32 RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "FAIL: loom quantize ${IN} --type f32 exited ${rc}: ${err}")
endif()
file(SIZE ${OUT} size)
if(size LESS BYTES)
  message(FATAL_ERROR "FAIL: ${OUT} is ${size} bytes, fewer than the ${BYTES} of tensor data expected")
endif()
math(EXPR off "${size} - ${BYTES}")
file(READ ${OUT} hex OFFSET ${off} HEX)
string(SHA256 got "${hex}")
if(NOT got STREQUAL SHA)
  message(FATAL_ERROR "FAIL: loom's f32 dequantisation of ${IN} differs from the peer's (sha256 of the data ${got}, expected ${SHA})")
endif()
message("PASS: loom dequantises ${IN} bit-identically to llama.cpp (${BYTES} bytes of f32)")
