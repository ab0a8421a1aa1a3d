# Install rules: headers; both libraries (libpipc.so.0 with its links, libpipc.a); the
# preload library; a CMake package with a version file (pipc::pipc, the shared library,
# and pipc::pipc_static); and two pkg-config files (pipc.pc, shared; pipc-static.pc).
include(CMakePackageConfigHelpers)

set(PIPC_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/pipc)

install(TARGETS pipc_static pipc_shared EXPORT pipc-targets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# For LD_PRELOAD, not for linking: no part of the CMake package's targets.
install(TARGETS pipc_preload LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/pipc ${PROJECT_BINARY_DIR}/include/pipc
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp" PATTERN "*.h")
install(EXPORT pipc-targets NAMESPACE pipc:: DESTINATION ${PIPC_CMAKE_DIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/pipc-config.cmake.in
  ${PROJECT_BINARY_DIR}/pipc-config.cmake
  INSTALL_DESTINATION ${PIPC_CMAKE_DIR}
  PATH_VARS CMAKE_INSTALL_LIBDIR)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/pipc-config-version.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/pipc-config.cmake ${PROJECT_BINARY_DIR}/pipc-config-version.cmake
  DESTINATION ${PIPC_CMAKE_DIR})

# pkg-config: every path relative to the .pc file, so the installed tree can move.
file(RELATIVE_PATH PIPC_PC_TO_PREFIX /root/${CMAKE_INSTALL_LIBDIR}/pkgconfig /root)
set(PIPC_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
set(PIPC_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
foreach(pc IN ITEMS pipc pipc-static)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/${pc}.pc.in ${PROJECT_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()
