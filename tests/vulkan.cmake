# Vulkan backend tests (backends/vulkan). They run on lavapipe on a GPU-less CI box; with no
# Vulkan device at all they print SKIP and exit 77.
if(TARGET loom AND LOOM_VULKAN)
  get_target_property(_loom_defs loom INTERFACE_COMPILE_DEFINITIONS)
  if(_loom_defs MATCHES "LOOM_HAVE_VULKAN")
    loom_unit_test(test_vulkan_ops)
    set_tests_properties(test_vulkan_ops PROPERTIES SKIP_RETURN_CODE 77)
  endif()
endif()
