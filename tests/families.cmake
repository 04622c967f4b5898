# The families added with the architecture descriptor (issue 13): each fixture through `loom check`
# against its reference on the CPU (SIMD and scalar) and on Vulkan, from the HF directory and from
# its `loom convert`ed GGUF. The references are numpy float64 re-implementations of transformers'
# code (tests/fixtures/gen_families_np.py; tests/fixtures/README.md says what that means), until
# gen_families.py writes them with transformers 5.17 on the GPU machine. Tolerance:
# 4x the largest max abs error measured over logits, hidden states and decode on the scalar,
# AVX-512 and lavapipe paths, HF and GGUF (2026-12-04: mistral 2.4e-6, phi3 1.7e-6, olmo2 2.9e-6,
# llama3rope 2.6e-6, qwen2-swa 2.0e-6, gemma 1.2e-6, gemma2 2.5e-6, gemma3 3.6e-6). A 0.1% RoPE base
# (LOOM_TEST_PERTURB=rope_theta*1.001) fails it on gemma2, gemma3 and olmo2.
set(LOOM_FAMILY_TOL 1.5e-5)
set(_fam_vk_skip "if ! \"$0\" devices | grep -q '^vulkan:[0-9]'; then echo SKIP: no Vulkan device; exit 77; fi; exec \"$0\" \"$@\"")
get_target_property(_fam_defs loom INTERFACE_COMPILE_DEFINITIONS)
file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/converted)

function(loom_family_tests fx)
  set(ref ${LOOM_FIXTURES}/${fx}/reference.safetensors)
  if(NOT EXISTS ${ref})
    message(STATUS "loom: family fixture ${fx} is not in tests/fixtures: its checks are not declared")
    return()
  endif()
  set(gguf ${CMAKE_BINARY_DIR}/converted/${fx}.gguf)
  add_test(NAME convert_${fx} COMMAND ${LOOM_BIN} convert ${LOOM_FIXTURES}/${fx} ${gguf})
  set_tests_properties(convert_${fx} PROPERTIES FIXTURES_SETUP gguf_${fx})
  foreach(src hf gguf)
    set(m ${LOOM_FIXTURES}/${fx})
    set(n check_${fx})
    if(src STREQUAL "gguf")
      set(m ${gguf})
      set(n check_${fx}_gguf)
    endif()
    add_test(NAME ${n}_simd COMMAND ${LOOM_BIN} check -m ${m} --reference ${ref} --tol ${LOOM_FAMILY_TOL} --device cpu -t 2)
    add_test(NAME ${n}_scalar COMMAND ${LOOM_BIN} check -m ${m} --reference ${ref} --tol ${LOOM_FAMILY_TOL}
             --device cpu -t 2 --scalar)
    set(tests ${n}_simd ${n}_scalar)
    if(_fam_defs MATCHES "LOOM_HAVE_VULKAN")
      add_test(NAME ${n}_vulkan COMMAND sh -c "${_fam_vk_skip}" ${LOOM_BIN} check -m ${m} --reference ${ref}
               --tol ${LOOM_FAMILY_TOL} --device vulkan)
      set_tests_properties(${n}_vulkan PROPERTIES SKIP_RETURN_CODE 77)
      list(APPEND tests ${n}_vulkan)
    endif()
    if(src STREQUAL "gguf")
      set_tests_properties(${tests} PROPERTIES FIXTURES_REQUIRED gguf_${fx})
    endif()
  endforeach()
endfunction()

loom_family_tests(llama3rope-tiny) # Llama 3 RoPE scaling (factor 8, original context 64)
loom_family_tests(mistral-tiny)    # Mistral: the Llama graph, GGUF arch "llama"
loom_family_tests(phi3-tiny)       # Phi-3: fused qkv and gate_up, split into row views on load
loom_family_tests(olmo2-tiny)      # OLMo 2: post-norms only, q/k norm over the whole projection
loom_family_tests(qwen2-swa-tiny)  # Qwen2 with use_sliding_window: window 8 from layer max_window_layers on
loom_family_tests(gemma-tiny)      # Gemma: GELU-tanh, sqrt(hidden) embedding scale, 1 + w norms
loom_family_tests(gemma2-tiny)     # Gemma 2: sandwich norms, query_pre_attn_scalar, soft-caps, alternating window
loom_family_tests(gemma3-tiny)     # Gemma 3: + per-head q/k norm, local/global RoPE bases, every 3rd layer global
loom_family_tests(qwen3moe-tiny)   # Qwen3-MoE: 8 experts, top 2, renormalised; stacked from one tensor per expert
loom_family_tests(mixtral-tiny)    # Mixtral: 4 experts, top 2; GGUF as llama.cpp's "llama" with expert keys

# The second oracle: llama.cpp (3f545be, CPU) on each fixture's `loom convert` GGUF, its logits in
# tests/fixtures/<fx>/peer_reference.safetensors (tests/fixtures/peer/gen_peer_reference.py; the
# fixtures README says how). Independent of the numpy references: a family whose numpy
# re-implementation and loom share a misreading of transformers would still fail here, unless
# llama.cpp misreads it the same way. `loom check` from the HF directory (SIMD) and from the GGUF
# (scalar, Vulkan). Tolerances, 4x the largest max abs error measured on those paths (2026-12-05):
# - families without GELU: loom vs llama.cpp <= 3.0e-6 (mixtral, Vulkan); llama.cpp vs numpy <= 1.5e-6.
#   A 0.1% RoPE base fails it (8.5e-5 on mistral).
# - Gemma, Gemma 2, Gemma 3: llama.cpp's CPU GELU reads a float16 table (ggml-cpu/vec.h
#   GGML_GELU_FP16), which moves its logits by 5.1e-4 / 8.2e-4 / 9.4e-4 from loom and from numpy alike
#   (loom's paths differ from each other by < 1e-6); tolerance 1.25x that, 1.2e-3: it catches a 1%
#   GELU error (>= 5.8e-2), a wrong query scale (0.28), a wrong layer pattern (0.47), a 1% RoPE base
#   on gemma3 (1.4e-3), not a 0.1% one. The numpy check above is the fine one for these.
set(LOOM_PEER_TOL 1.2e-5)
set(LOOM_PEER_TOL_GELU 1.2e-3)
function(loom_family_peer_tests fx tol)
  set(ref ${LOOM_FIXTURES}/${fx}/peer_reference.safetensors)
  if(NOT EXISTS ${ref})
    return()
  endif()
  set(gguf ${CMAKE_BINARY_DIR}/converted/${fx}.gguf)
  add_test(NAME peer_${fx}_simd COMMAND ${LOOM_BIN} check -m ${LOOM_FIXTURES}/${fx} --reference ${ref} --tol ${tol}
           --device cpu -t 2)
  add_test(NAME peer_${fx}_gguf_scalar COMMAND ${LOOM_BIN} check -m ${gguf} --reference ${ref} --tol ${tol}
           --device cpu -t 2 --scalar)
  set_tests_properties(peer_${fx}_gguf_scalar PROPERTIES FIXTURES_REQUIRED gguf_${fx})
  if(_fam_defs MATCHES "LOOM_HAVE_VULKAN")
    add_test(NAME peer_${fx}_gguf_vulkan COMMAND sh -c "${_fam_vk_skip}" ${LOOM_BIN} check -m ${gguf} --reference ${ref}
             --tol ${tol} --device vulkan)
    set_tests_properties(peer_${fx}_gguf_vulkan PROPERTIES SKIP_RETURN_CODE 77 FIXTURES_REQUIRED gguf_${fx})
  endif()
endfunction()

foreach(fx mistral-tiny phi3-tiny olmo2-tiny llama3rope-tiny qwen3moe-tiny mixtral-tiny)
  loom_family_peer_tests(${fx} ${LOOM_PEER_TOL})
endforeach()
foreach(fx gemma-tiny gemma2-tiny gemma3-tiny)
  loom_family_peer_tests(${fx} ${LOOM_PEER_TOL_GELU})
endforeach()
# qwen2-swa-tiny has none: llama.cpp's qwen2 has no sliding window.

# Windowed layers' ring caches (models/session.c) through `loom check`: with --ctx 256 and ring steps
# of 3 tokens (LOOM_RING_STEP, a test hook; the default is 512), the windowed layers keep rings of
# 8 + 2 rows, the 24-token prompt runs in 8 chunks and the 24-step greedy run wraps the ring four
# times; same references and tolerance as above. (tests/unit/test_ring_kv.c compares rings with
# full caches over 120 decode steps on the CPU, 36 on Vulkan.)
foreach(fx gemma2-tiny gemma3-tiny qwen2-swa-tiny)
  set(ref ${LOOM_FIXTURES}/${fx}/reference.safetensors)
  add_test(NAME ring_${fx}_simd COMMAND ${LOOM_BIN} check -m ${LOOM_FIXTURES}/${fx} --reference ${ref}
           --tol ${LOOM_FAMILY_TOL} --ctx 256 --device cpu -t 2)
  set_tests_properties(ring_${fx}_simd PROPERTIES ENVIRONMENT LOOM_RING_STEP=3)
  if(_fam_defs MATCHES "LOOM_HAVE_VULKAN")
    add_test(NAME ring_${fx}_vulkan COMMAND sh -c "${_fam_vk_skip}" ${LOOM_BIN} check -m ${LOOM_FIXTURES}/${fx}
             --reference ${ref} --tol ${LOOM_FAMILY_TOL} --ctx 256 --device vulkan)
    set_tests_properties(ring_${fx}_vulkan PROPERTIES ENVIRONMENT LOOM_RING_STEP=3 SKIP_RETURN_CODE 77)
  endif()
endforeach()

# GGUFs written by llama.cpp's own converter (tests/fixtures/llamacpp-gguf/README.md), so the files
# people download load as llama.cpp means them. Five keep every hyper-parameter of the fixture and
# are checked against its numpy reference (max abs err 1.2e-6 .. 3.1e-6; LOOM_FAMILY_TOL). Three
# lose some in llama.cpp's conversion (Gemma 2/3: the query scale; Gemma 3: the layer pattern;
# Qwen2: the window): those are checked against llama.cpp run on the same file (qwen2-swa 1.2e-6:
# LOOM_PEER_TOL; gemma2 8.3e-4, gemma3 1.3e-3, llama.cpp's f16 GELU table: tolerance 1.7e-3).
set(_lg ${LOOM_FIXTURES}/llamacpp-gguf)
foreach(spec "mistral-tiny|${LOOM_FIXTURES}/mistral-tiny/reference.safetensors|${LOOM_FAMILY_TOL}"
             "phi3-tiny|${LOOM_FIXTURES}/phi3-tiny/reference.safetensors|${LOOM_FAMILY_TOL}"
             "llama3rope-tiny|${LOOM_FIXTURES}/llama3rope-tiny/reference.safetensors|${LOOM_FAMILY_TOL}"
             "gemma-tiny|${LOOM_FIXTURES}/gemma-tiny/reference.safetensors|${LOOM_FAMILY_TOL}"
             "mixtral-tiny|${LOOM_FIXTURES}/mixtral-tiny/reference.safetensors|${LOOM_FAMILY_TOL}"
             "gemma2-tiny|${_lg}/gemma2-tiny.peer_reference.safetensors|1.7e-3"
             "gemma3-tiny|${_lg}/gemma3-tiny.peer_reference.safetensors|1.7e-3"
             "qwen2-swa-tiny|${_lg}/qwen2-swa-tiny.peer_reference.safetensors|${LOOM_PEER_TOL}")
  string(REPLACE "|" ";" spec "${spec}")
  list(GET spec 0 fx)
  list(GET spec 1 ref)
  list(GET spec 2 tol)
  add_test(NAME llamacpp_gguf_${fx}_simd COMMAND ${LOOM_BIN} check -m ${_lg}/${fx}.gguf --reference ${ref} --tol ${tol}
           --device cpu -t 2)
  if(_fam_defs MATCHES "LOOM_HAVE_VULKAN")
    add_test(NAME llamacpp_gguf_${fx}_vulkan COMMAND sh -c "${_fam_vk_skip}" ${LOOM_BIN} check -m ${_lg}/${fx}.gguf
             --reference ${ref} --tol ${tol} --device vulkan)
    set_tests_properties(llamacpp_gguf_${fx}_vulkan PROPERTIES SKIP_RETURN_CODE 77)
  endif()
endforeach()
