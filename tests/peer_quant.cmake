# Interop (issue 17): GGUF files written by llama.cpp's own llama-quantize (peer at 3f545be; how
# they were made: tests/fixtures/peer-quant/README.md) load in loom, and
#  1. loom's f32 dequantisation of every tensor equals llama.cpp's bit for bit (the SHA-256 of the
#     tensor data of `llama-quantize --allow-requantize FILE OUT F32`, recorded when the fixtures
#     were made; tests/scripts/peer_dequant.cmake) — the block decoders agree with ggml's exactly;
#  2. `loom check` against the transformers long references holds each to the agreement measured
#     on the CPU (SIMD and scalar) and on lavapipe (2026-12-05, docs/quantization.md "Interop"):
#     top-1 ~2.5 points under the lowest measured (1 position = 0.2% / 0.14%), KL ~1.25x the
#     highest. The peer is never needed at test time.
# stories260K (trained; rows of 64 and 172, so its k-quant presets are mostly 32-block fallbacks)
# holds the 32-block types; llama-wide (random; every row divides 256) the K and IQ4_XS blocks.
# name | tensor-data bytes of the f32 dequantisation | its SHA-256 | min top-1 % | max KL [| Vulkan's min top-1 %]
# llama-wide's Vulkan checks (since session 16) run against the long reference's first 200 positions
# (llama-wide/long_reference_200.safetensors: tests/fixtures/truncate_reference.py; the same greedy
# part) with the decode GEMVs on 8-bit x (LOOM_VK_GEMV_Q=dp1, a GPU's default), 4-5 CPU-s on lavapipe
# instead of 10-15 (the 658-token prefill and lavapipe's default decode GEMV, matvec.comp, ~0.15 s a
# step at these shapes). Over those positions the files measured (CPU SIMD / scalar, lavapipe with and
# without dp1, 2026-12-06) top-1 3.0 / 22.4 / 45.3 / 65.5 / 81.9 / 45.3 % at the lowest and KL 0.94 /
# 0.40 / 0.14 / 0.037 / 0.010 / 0.15 at the highest (q2_k .. iq4_xs as below): the last column is the
# lowest minus ~2.5 points; the KL bound stays the long reference's (16-27% above those). A planted
# x1.02 on every norm's output failed q6_k's (KL 1.3e-02) as it failed the long reference's.
# matvec.comp on these block types runs against the CPU in xcheck_q_llama-wide_{q4_k_m,q6_k}_vulkan,
# xcheck_q_llama-tiny_<type>_vulkan and test_vulkan_quant_gemv_old.
set(LOOM_PEERQ
  "stories260K-q4_0|1171200|a318da4894eaee568c2cc40edc4214c9d9038170c0b49f3b51018f8293475d11|86|0.068"
  "stories260K-q4_1|1171200|b6dc864303238cb44de1fb8662e44d282340f24dd67102a36555dce8f3e16745|87|0.054"
  "stories260K-q5_0|1171200|37dda9cfe09efa7d3165f556ecb647c62c23235f67c812f7d2b7486c7d2abc49|92|0.017"
  "stories260K-q5_1|1171200|6d3b72408a75cfa4fb3cd0d9d2c179be9f3db84757305b240b270c2164e0b19a|92|0.015"
  "stories260K-q8_0|1171200|6749e288740ec9bf6faf01922f5a1f5bb6be36768dbba3cea30fe69b0399e3fd|97.5|7.6e-4"
  "stories260K-q3_k_m|1171200|545415a42b29e77d04a9d5d459b8ce8009abcb7856f4b72a2404a810e82fad84|86|0.054"
  "stories260K-q4_k_m|1171200|e604317d6f0060b41c31b1f73754085321c3f34185376635f0b77192c761c5a0|92|0.017"
  "stories260K-q5_k_m|1171200|4dcfea1924fd958914b300c077b87126c9542830bdeabd30dc60280a5956bba3|93|0.014"
  "stories260K-iq4_nl|1171200|6d09857f7aec4c80af1d53b0664df3cb2cb70235c8454cc0258f901ee40db095|88|0.057"
  "llama-wide-q2_k|5772288|a0a49dc8452f1a044cc877a440d9c5e8ef06642824b105dc9cc07fb1fc691cf8|2|1.14|0.5"
  "llama-wide-q3_k_m|5772288|8da255318044a0479dbc947a05607344424519ab6b2de20ac741bbecba4478d9|19|0.5|19.5"
  "llama-wide-q4_k_m|5772288|01b77bda8c9ca02bbc4d48ee93a739b87ceb602a092db6350cef97795a6dbcfd|46|0.17|42.5"
  "llama-wide-q5_k_m|5772288|25e218a7bca44de640ef8a53d55caae53b176b58f701e1f7698bf64b491a865d|64|0.043|63"
  "llama-wide-q6_k|5772288|a3844932478a80678012a88842634ecaf34ec68838d1224132cc7fb3d8a134da|79.5|0.012|79"
  "llama-wide-iq4_xs|5772288|0dbd72c4eb626a03987266921d6f83ab85505468071a951bd732e58cf6eda0db|40.5|0.19|42.5")
set(_pq_dir ${LOOM_FIXTURES}/peer-quant)
set(_pq_tmp ${CMAKE_BINARY_DIR}/peer-quant)
file(MAKE_DIRECTORY ${_pq_tmp})
set(_pq_vk_skip "if ! \"$0\" devices | grep -q '^vulkan:[0-9]'; then echo SKIP: no Vulkan device; exit 77; fi; exec \"$0\" \"$@\"")
get_target_property(_pq_defs loom INTERFACE_COMPILE_DEFINITIONS)
foreach(entry ${LOOM_PEERQ})
  string(REPLACE "|" ";" e "${entry}")
  list(GET e 0 name)
  list(GET e 1 bytes)
  list(GET e 2 sha)
  list(GET e 3 top1)
  list(GET e 4 kl)
  set(ref ${LOOM_FIXTURES}/llama-wide/long_reference.safetensors)
  set(vk_ref ${LOOM_FIXTURES}/llama-wide/long_reference_200.safetensors)
  set(vk_env LOOM_VK_GEMV_Q=dp1)
  if(name MATCHES "^stories260K")
    set(ref ${LOOM_FIXTURES}/stories260K-hf/long_reference.safetensors)
    set(vk_ref ${ref})
    set(vk_env "")
    set(vk_top1 ${top1})
  else()
    list(GET e 5 vk_top1)
  endif()
  set(f ${_pq_dir}/${name}.gguf)
  add_test(NAME peer_q_dequant_${name} COMMAND ${CMAKE_COMMAND} -DLOOM=${LOOM_BIN} -DIN=${f}
           -DOUT=${_pq_tmp}/${name}-f32.gguf -DBYTES=${bytes} -DSHA=${sha}
           -P ${CMAKE_CURRENT_SOURCE_DIR}/scripts/peer_dequant.cmake)
  add_test(NAME peer_q_check_${name}_simd COMMAND ${LOOM_BIN} check -m ${f} --reference ${ref}
           --min-top1 ${top1} --max-kl ${kl} --device cpu -t 2)
  add_test(NAME peer_q_check_${name}_scalar COMMAND ${LOOM_BIN} check -m ${f} --reference ${ref}
           --min-top1 ${top1} --max-kl ${kl} --device cpu -t 2 --scalar)
  if(_pq_defs MATCHES "LOOM_HAVE_VULKAN")
    add_test(NAME peer_q_check_${name}_vulkan COMMAND ${LOOM_EXPECT} --match "on vulkan.*PASS" -- sh -c "${_pq_vk_skip}"
             ${LOOM_BIN} check -m ${f} --reference ${vk_ref} --min-top1 ${vk_top1} --max-kl ${kl} --device vulkan)
    set_tests_properties(peer_q_check_${name}_vulkan PROPERTIES SKIP_RETURN_CODE 77 LABELS sanitizer_redundant)
    if(vk_env)
      set_tests_properties(peer_q_check_${name}_vulkan PROPERTIES ENVIRONMENT ${vk_env})
    endif()
  endif()
endforeach()
# Bad input on the command line (issue 17): a llama-quantize file with one field of an IQ4_XS
# tensor broken (an unknown ggml type id, rows that are not whole 256-blocks, a NaN block scale):
# `loom run` prints one line naming the tensor and the problem and exits 1.
foreach(kind type row nan)
  add_test(NAME peer_q_bad_${kind} COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/scripts/quant_bad_cli.sh ${LOOM_BIN}
           ${_pq_dir}/llama-wide-iq4_xs.gguf ${_pq_tmp} ${kind})
endforeach()
# an unknown `loom quantize --type`: one line naming it and the presets (a usage error: exit 2)
add_test(NAME quantize_unknown_type_line COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/expect_error.sh
         "unknown --type 'q4_k_x' \\(q4_0, .*iq4_xs, f32\\)" ${LOOM_BIN} quantize ${_pq_dir}/llama-wide-q6_k.gguf
         ${_pq_tmp}/never.gguf --type q4_k_x)
