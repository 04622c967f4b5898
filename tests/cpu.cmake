# CPU backend tests (backends/cpu). Each must run in seconds on a 2-core box.
loom_unit_test(test_ops)
loom_unit_test(test_cpu_threads)

# Kernel micro-benchmark on qwen2-0.5b shapes: a tool, not a test (not registered with add_test).
add_executable(bench_kernels ${CMAKE_SOURCE_DIR}/backends/cpu/bench/bench_kernels.c)
target_include_directories(bench_kernels PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bench_kernels PRIVATE loom)
# One thread's decode GEMV against a plain read of the same memory (GB/s): also a tool, not a test.
add_executable(bench_stream ${CMAKE_SOURCE_DIR}/backends/cpu/bench/bench_stream.c)
target_include_directories(bench_stream PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bench_stream PRIVATE loom)
# shaders/attn_cm.comp's blocked algorithm (prefill attention on cooperative matrices, f16 inputs)
# emulated on the CPU against naive attention, within tests/unit/attn_cm_bound.h's bound, and two
# planted faults that must break it: the algorithm's check where no GPU has cooperative matrices.
loom_unit_test(test_attn_cm_emu)
