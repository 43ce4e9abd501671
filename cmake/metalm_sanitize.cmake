# Sanitizer and fuzzing builds, set up before any target so that every metalm
# target (the libraries, the shared precompiled header, the CLI, the tests and
# the examples) is compiled and linked the same way.
#
#   -DMETALM_SANITIZE=address,undefined   any list -fsanitize= accepts
#   -DMETALM_FUZZ=ON                      clang only: libFuzzer coverage on every
#                                         target and the fuzz_<target> binaries of
#                                         tests/fuzz (scripts/dev/fuzz.sh)
#
# Undefined behaviour aborts (-fno-sanitize-recover) instead of printing and
# carrying on, so a test or a fuzz input cannot pass over it.

set(METALM_SANITIZE "" CACHE STRING
  "Sanitizers for every metalm target, as -fsanitize= takes them (e.g. address,undefined); empty: none")
option(METALM_FUZZ "Build the libFuzzer harnesses of tests/fuzz (clang)" OFF)

if(METALM_SANITIZE)
  add_compile_options(-fsanitize=${METALM_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${METALM_SANITIZE})
endif()

if(METALM_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "METALM_FUZZ needs clang (libFuzzer), not ${CMAKE_CXX_COMPILER_ID}: "
      "configure with -DCMAKE_CXX_COMPILER=clang++-14 (scripts/dev/fuzz.sh does)")
  endif()
  # Coverage feedback everywhere; only the harness binaries link libFuzzer's main.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

# metalm_sanitize_interface(TARGET): an installed sanitized library is only
# usable by a program linked with the same runtime, so the exported interface
# target carries the link flag to consumers.
function(metalm_sanitize_interface target)
  if(METALM_SANITIZE)
    target_link_options(${target} INTERFACE -fsanitize=${METALM_SANITIZE})
  endif()
endfunction()
