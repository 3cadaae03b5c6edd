# Small helpers so that each folder's CMakeLists is a few lines (after Abseil's).

add_library(yard_copts INTERFACE)
target_compile_options(yard_copts INTERFACE -Wall -Wextra -Wpedantic -Wshadow
  $<$<BOOL:${YARD_WERROR}>:-Werror>)
# GCC 12 at -O1 with the sanitizers' instrumentation reports
# maybe-uninitialized inside libstdc++ (std::regex's std::function state), a
# known false positive; the plain build keeps the warning.
if(YARD_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(yard_copts INTERFACE -Wno-maybe-uninitialized)
endif()

add_library(yard_sanitizers INTERFACE)
if(YARD_SANITIZE)
  target_compile_options(yard_sanitizers INTERFACE -fsanitize=${YARD_SANITIZE}
    -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(yard_sanitizers INTERFACE -fsanitize=${YARD_SANITIZE})
endif()
# Fuzz builds: every library also gets libFuzzer's coverage instrumentation
# (no main); the fuzz targets themselves link -fsanitize=fuzzer (fuzz/).
if(YARD_FUZZ)
  target_compile_options(yard_sanitizers INTERFACE -fsanitize=fuzzer-no-link)
  target_link_options(yard_sanitizers INTERFACE -fsanitize=fuzzer-no-link)
endif()

# yard_cc_library(NAME name SRCS a.cc HDRS a.h DEPS x y)
#   Defines yard_<name> with alias yard::<name>; DEPS are PUBLIC, warnings PRIVATE.
function(yard_cc_library)
  cmake_parse_arguments(Y "" "NAME" "SRCS;HDRS;DEPS" ${ARGN})
  add_library(yard_${Y_NAME} STATIC ${Y_SRCS} ${Y_HDRS})
  add_library(yard::${Y_NAME} ALIAS yard_${Y_NAME})
  # Installed headers keep their folders under include/switchyard
  # (cmake/YardInstall.cmake), so "common/status.h" resolves in both trees.
  target_include_directories(yard_${Y_NAME} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/switchyard>)
  target_link_libraries(yard_${Y_NAME} PUBLIC ${Y_DEPS} yard_sanitizers
    PRIVATE yard_copts)
endfunction()

# yard_cc_test(NAME name SRCS a_test.cc DEPS x LABELS unit [TIMEOUT seconds])
#   TIMEOUT: ctest's time limit for each discovered test case.
function(yard_cc_test)
  cmake_parse_arguments(Y "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT YARD_BUILD_TESTS)
    return()
  endif()
  if(NOT Y_LABELS)
    set(Y_LABELS unit)
  endif()
  add_executable(${Y_NAME} ${Y_SRCS})
  target_link_libraries(${Y_NAME} PRIVATE ${Y_DEPS} GTest::gmock GTest::gtest_main
    yard_copts yard_sanitizers)
  set(timeout_property)
  if(Y_TIMEOUT)
    set(timeout_property TIMEOUT ${Y_TIMEOUT})
  endif()
  gtest_discover_tests(${Y_NAME} PROPERTIES LABELS "${Y_LABELS}"
    ${timeout_property} DISCOVERY_TIMEOUT 60)
endfunction()

# yard_cc_benchmark(NAME name SRCS a_bench.cc DEPS x)
#   Also registers a one-iteration smoke run in ctest (label: bench). A
#   benchmark that finds wrong output calls SkipWithError, which Google
#   Benchmark prints as "ERROR OCCURRED" while the program still exits 0:
#   that text fails the smoke run.
function(yard_cc_benchmark)
  cmake_parse_arguments(Y "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${Y_NAME} ${Y_SRCS})
  target_link_libraries(${Y_NAME} PRIVATE ${Y_DEPS} benchmark::benchmark
    yard_copts yard_sanitizers)
  if(YARD_BUILD_TESTS)
    add_test(NAME ${Y_NAME}.smoke COMMAND ${Y_NAME} --benchmark_min_time=0.001)
    set_tests_properties(${Y_NAME}.smoke PROPERTIES LABELS bench TIMEOUT 300
      FAIL_REGULAR_EXPRESSION "ERROR OCCURRED")
  endif()
endfunction()
