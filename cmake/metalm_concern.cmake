# Helpers that keep the per-concern targets uniform.

function(metalm_target_flags target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "EXECUTABLE")
    # Executables would get -fPIE and could not reuse the -fPIC precompiled
    # header; -fPIC objects link into a PIE just as well.
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE OFF)
    target_compile_options(${target} PRIVATE -fPIC)
  endif()
endfunction()

# metalm_reuse_pch(TARGET SOURCES...) gives TARGET the shared torch
# precompiled header, except for the sources that include no torch header
# (directly, or through the metalm headers that do): loading the header
# (over 500 MB) costs such a file about 7 s, three times its whole compile.
function(metalm_reuse_pch target)
  target_precompile_headers(${target} REUSE_FROM metalm_pch)
  foreach(src IN LISTS ARGN)
    file(STRINGS "${src}" torch_includes
      REGEX "#include [<\"](ATen/|torch/|metalm/(model|train|analysis|io)/|metalm/data/token_dataset|metalm/metalm.hpp)")
    if(NOT torch_includes)
      set_source_files_properties("${src}" PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
    endif()
  endforeach()
endfunction()

# metalm_concern(NAME [DEPS other...]) builds src/NAME/*.cpp into the static
# library metalm_NAME (an interface library while the folder has no sources).
# Every concern requires C++17 of whatever links it, in this build and
# through the installed package, so a consumer need not set the standard.
# Headers come from include/ and from the generated include directory
# (metalm/core/version.hpp).
set(METALM_CONCERN_TARGETS "" CACHE INTERNAL "")
set(METALM_GENERATED_INCLUDE_DIR "${PROJECT_BINARY_DIR}/include")
function(metalm_concern name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/src/${name}/*.cpp")
  set(target metalm_${name})
  set(deps "")
  foreach(dep IN LISTS ARG_DEPS)
    list(APPEND deps metalm_${dep})
  endforeach()
  if(sources)
    add_library(${target} STATIC ${sources})
    metalm_target_flags(${target})
    target_compile_features(${target} PUBLIC cxx_std_17)
    target_include_directories(${target} PUBLIC
      $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
      $<BUILD_INTERFACE:${METALM_GENERATED_INCLUDE_DIR}>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
    target_link_libraries(${target} PUBLIC ${deps} torch nlohmann_json::nlohmann_json
      spdlog::spdlog Threads::Threads)
    metalm_reuse_pch(${target} ${sources})
  else()
    add_library(${target} INTERFACE)
    target_compile_features(${target} INTERFACE cxx_std_17)
    target_include_directories(${target} INTERFACE
      $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
      $<BUILD_INTERFACE:${METALM_GENERATED_INCLUDE_DIR}>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
    target_link_libraries(${target} INTERFACE ${deps} torch nlohmann_json::nlohmann_json
      spdlog::spdlog Threads::Threads)
  endif()
  set(METALM_CONCERN_TARGETS ${METALM_CONCERN_TARGETS} ${target} CACHE INTERNAL "")
endfunction()

# metalm_test(NAME [DEPS concern...]) builds tests/NAME/*.cpp into test_NAME,
# linked only against the concerns it names, so each concern's tests build on
# their own.
function(metalm_test name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/tests/${name}/*.cpp")
  if(NOT sources)
    return()
  endif()
  set(libs "")
  foreach(dep IN LISTS ARG_DEPS)
    list(APPEND libs metalm_${dep})
  endforeach()
  add_executable(test_${name} ${sources})
  metalm_target_flags(test_${name})
  target_include_directories(test_${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(test_${name} PRIVATE ${libs} GTest::gtest GTest::gtest_main)
  target_compile_definitions(test_${name} PRIVATE
    METALM_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    METALM_BINARY_DIR="${PROJECT_BINARY_DIR}"
    METALM_PYTHON="$<$<BOOL:${METALM_PYTHON_FOUND}>:${Python3_EXECUTABLE}>")
  metalm_reuse_pch(test_${name} ${sources})
  # One ctest entry per suite binary: loading libtorch costs about a second,
  # too much to pay once per test case.
  add_test(NAME ${name} COMMAND test_${name})
  # The precision probe caches its results in the build tree, not the home directory.
  set_tests_properties(${name} PROPERTIES ENVIRONMENT
    "OMP_WAIT_POLICY=passive;XDG_CACHE_HOME=${PROJECT_BINARY_DIR}/test-cache")
endfunction()
