# The library as installed for programs that embed loom (docs/embedding.md):
#   libloom.so  the objects of the in-tree static `loom` (built position-independent), exporting
#               only loom_* symbols (cmake/loom.map);
#   libloom.a   the same objects merged into one relocatable object (ld -r) whose non-loom_*
#               symbols are made local (objcopy), so gguf_*, tok_*, ... cannot clash with a
#               program's own (the peer's gguf.h has gguf_find_key too);
#   loom.h and loom.pc.
# The in-tree `loom` target keeps every symbol: loom's own tools and tests use the internal headers.
include(GNUInstallDirs)

add_library(loom_shared SHARED ${CMAKE_SOURCE_DIR}/cmake/empty.c)
target_link_libraries(loom_shared PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,loom>")
target_link_options(loom_shared PRIVATE -Wl,--version-script=${CMAKE_SOURCE_DIR}/cmake/loom.map -Wl,--no-undefined)
set_target_properties(loom_shared PROPERTIES OUTPUT_NAME loom VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR} LINK_DEPENDS ${CMAKE_SOURCE_DIR}/cmake/loom.map)

find_program(LOOM_OBJCOPY NAMES objcopy REQUIRED)
set(LOOM_PUBLIC_DIR ${CMAKE_BINARY_DIR}/public)
set(LOOM_PUBLIC_A ${LOOM_PUBLIC_DIR}/libloom.a)
add_custom_command(OUTPUT ${LOOM_PUBLIC_A}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${LOOM_PUBLIC_DIR}
  COMMAND ${CMAKE_LINKER} -r --whole-archive $<TARGET_FILE:loom> -o ${LOOM_PUBLIC_DIR}/loom.o
  COMMAND ${LOOM_OBJCOPY} --wildcard --keep-global-symbol=loom_* ${LOOM_PUBLIC_DIR}/loom.o
  COMMAND ${CMAKE_COMMAND} -E rm -f ${LOOM_PUBLIC_A}
  COMMAND ${CMAKE_AR} qc ${LOOM_PUBLIC_A} ${LOOM_PUBLIC_DIR}/loom.o
  COMMAND ${CMAKE_RANLIB} ${LOOM_PUBLIC_A}
  DEPENDS loom
  COMMENT "libloom.a for installing (non-loom_ symbols local)"
  VERBATIM)
add_custom_target(loom_public_static ALL DEPENDS ${LOOM_PUBLIC_A})

set(LOOM_PC_REQUIRES "libcjson libpcre2-8 libutf8proc libxxhash")
if(TARGET Vulkan::Vulkan)
  string(APPEND LOOM_PC_REQUIRES " vulkan")
endif()
configure_file(${CMAKE_SOURCE_DIR}/cmake/loom.pc.in ${CMAKE_BINARY_DIR}/loom.pc @ONLY)

install(TARGETS loom_shared LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${LOOM_PUBLIC_A} DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${CMAKE_SOURCE_DIR}/include/loom.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${CMAKE_BINARY_DIR}/loom.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
