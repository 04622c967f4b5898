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
