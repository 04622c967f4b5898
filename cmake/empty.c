/* libloom.so is made of the static library's objects (cmake/library.cmake); a shared library
 * target needs a source of its own, and this is it. */
typedef int loom_empty_translation_unit;
