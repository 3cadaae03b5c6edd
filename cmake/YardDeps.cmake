# Every dependency comes from a Debian 12 package (see scripts/deps.sh).
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(ZMQ REQUIRED IMPORTED_TARGET libzmq)
find_package(cppzmq REQUIRED)
find_package(FlatBuffers REQUIRED)
find_program(FLATC flatc REQUIRED)
find_package(TBB REQUIRED)
# Debian 12's HiredisConfigVersion.cmake is broken; pkg-config works.
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(nlohmann_json REQUIRED)
# Metrics and health endpoints (metrics/): prometheus-cpp's core (the
# metric model and text format) and cpp-httplib (Debian builds it as a
# library; its pkg-config flags say which features the library has).
find_package(prometheus-cpp REQUIRED COMPONENTS core)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
if(YARD_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(YARD_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
