# `cmake --install BUILD --prefix P`: the `yard` binary, the libraries a
# program links to be a producer, a worker or a broker, their headers, and a
# CMake package so that another project can
#   find_package(Switchyard REQUIRED)
#   target_link_libraries(app PRIVATE Switchyard::worker)
# (examples/custom-worker). The libraries are static, so every library they
# link is installed and exported too (Switchyard::common, ::schemas, ...);
# the third-party ones are found again by SwitchyardConfig.cmake.
include(CMakePackageConfigHelpers)

# The public components and what they pull in, in link order.
set(YARD_EXPORTED_LIBRARIES client worker broker link queue registry redis
  balancer security schemas common)

set(YARD_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/switchyard)
set(YARD_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/Switchyard)

# Headers: every header a library lists among its sources, at the same path
# relative to the source tree ("worker/worker.h"), plus the FlatBuffers
# header flatc generates, which schemas/codec.h includes.
foreach(name ${YARD_EXPORTED_LIBRARIES})
  set(target yard_${name})
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${name})
  get_target_property(dir ${target} SOURCE_DIR)
  get_target_property(sources ${target} SOURCES)
  foreach(src ${sources})
    if(src MATCHES "\\.h$")
      cmake_path(ABSOLUTE_PATH src BASE_DIRECTORY ${dir}
        OUTPUT_VARIABLE abs)
      cmake_path(RELATIVE_PATH abs BASE_DIRECTORY ${PROJECT_SOURCE_DIR}
        OUTPUT_VARIABLE rel)
      cmake_path(GET rel PARENT_PATH rel_dir)
      install(FILES ${abs} DESTINATION ${YARD_INSTALL_INCLUDEDIR}/${rel_dir}
        COMPONENT devel)
    endif()
  endforeach()
  list(APPEND yard_install_targets ${target})
endforeach()
get_target_property(schemas_binary_dir yard_schemas BINARY_DIR)
install(FILES ${schemas_binary_dir}/gen/schemas/envelope_generated.h
  DESTINATION ${YARD_INSTALL_INCLUDEDIR}/schemas COMPONENT devel)

# The two interface targets every library links (warnings and sanitizer
# flags: only their link options reach a consumer).
set_target_properties(yard_copts PROPERTIES EXPORT_NAME copts)
set_target_properties(yard_sanitizers PROPERTIES EXPORT_NAME sanitizers)
install(TARGETS ${yard_install_targets} yard_copts yard_sanitizers
  EXPORT SwitchyardTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT devel
  INCLUDES DESTINATION ${YARD_INSTALL_INCLUDEDIR})
install(EXPORT SwitchyardTargets NAMESPACE Switchyard::
  DESTINATION ${YARD_INSTALL_CMAKEDIR} COMPONENT devel)

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/SwitchyardConfig.cmake.in
  ${PROJECT_BINARY_DIR}/SwitchyardConfig.cmake
  INSTALL_DESTINATION ${YARD_INSTALL_CMAKEDIR})
# 0.x: a minor version may break the API, so only the same minor matches.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/SwitchyardConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/SwitchyardConfig.cmake
  ${PROJECT_BINARY_DIR}/SwitchyardConfigVersion.cmake
  DESTINATION ${YARD_INSTALL_CMAKEDIR} COMPONENT devel)

install(TARGETS yard RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  COMPONENT runtime)

# `cpack -G DEB` in the build directory: switchyard_VERSION_ARCH.deb with all
# of the above under /usr; its runtime dependencies come from
# dpkg-shlibdeps (a consumer of the CMake package also needs the -dev
# packages that SwitchyardConfig.cmake finds).
set(CPACK_PACKAGE_NAME switchyard)
set(CPACK_PACKAGE_VENDOR Switchyard)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "Job message bus: yard broker, worker and CLI, and the C++ libraries")
set(CPACK_PACKAGE_CONTACT "Switchyard maintainers")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)
include(CPack)
