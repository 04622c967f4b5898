# Vulkan at the system level: a machine without any Vulkan driver gets a clear error for
# --device vulkan while auto falls back to the CPU. (The Khronos validation layer's runs are the
# checks labelled vk_validated: check_qwen2-tiny-bf16_vulkan, check_stories260K-hf_vulkan,
# check_q_llama-tiny_q4_k_m_vulkan, test_vulkan_quant, test_vulkan_quant_gemv_blk4,
# test_vulkan_quant_gemv_dp1; and vulkan_validation_llama-tiny_long below.)
if(TARGET test_vulkan_ops)
  add_test(NAME vulkan_no_driver_error COMMAND ${CMAKE_COMMAND} -E env VK_DRIVER_FILES=/nonexistent/icd.json
           ${CMAKE_CURRENT_SOURCE_DIR}/scripts/expect_error.sh "vulkan: no device found"
           ${LOOM_BIN} run -m ${LOOM_FIXTURES}/llama-tiny --tokens 1,2 -n 2 --device vulkan)
  add_test(NAME vulkan_no_driver_auto_cpu COMMAND ${CMAKE_COMMAND} -E env VK_DRIVER_FILES=/nonexistent/icd.json
           ${LOOM_EXPECT} --match "using device cpu" -- ${LOOM_BIN} run -m ${LOOM_FIXTURES}/llama-tiny --tokens 1,2 -n 2 --ids)
  # A 64-token prompt (the long reference) takes the prefill flash-attention tiles (attn_fa.comp),
  # whose shared memory is sized by the head dim and checked against the device's limit: sized for
  # head dim 128 whatever the model's, it declared 38,784 B, over lavapipe's 32 KiB (VUID-...-06530).
  add_test(NAME vulkan_validation_llama-tiny_long COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/vk_validate.sh ${LOOM_BIN} check -m ${LOOM_FIXTURES}/llama-tiny
           --reference ${LOOM_FIXTURES}/llama-tiny/long_reference.safetensors --device vulkan)
  set_tests_properties(vulkan_validation_llama-tiny_long PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
endif()
