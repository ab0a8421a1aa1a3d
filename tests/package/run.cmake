# ctest script: installs the built pipc into a scratch prefix, then builds and runs
# consumers of each library with each tool:
#   find_package(pipc)   pipc::pipc (shared), pipc::pipc_static, pipc::c
#   pkg-config           pipc (shared), pipc --static with -static, pipc-static
# checking which library each binary ended up with, and runs a plain mq_* program
# (PIPC_PLAIN_MQ, if given) under the installed libpipc-preload.so. Any failure is fatal.
cmake_minimum_required(VERSION 3.25)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "ok: ${ARGN}\n${out}")
endfunction()

# How `binary` is linked: "shared" (needs libpipc.so.N), "static-pipc" (dynamic, without
# libpipc), or "fully-static".
function(expect_linkage binary want)
  execute_process(COMMAND ${PIPC_READELF} -d ${binary} OUTPUT_VARIABLE dynamic ERROR_QUIET)
  if(NOT dynamic MATCHES "NEEDED")
    set(got fully-static)
  elseif(dynamic MATCHES "Shared library: \\[libpipc\\.so\\.${PIPC_SOVERSION}\\]")
    set(got shared)
  elseif(dynamic MATCHES "libpipc")
    set(got "other libpipc")
  else()
    set(got static-pipc)
  endif()
  if(NOT got STREQUAL want)
    message(FATAL_ERROR "${binary} is linked ${got}, want ${want}:\n${dynamic}")
  endif()
  message(STATUS "ok: ${binary} is linked ${got}")
endfunction()

set(prefix ${PIPC_SCRATCH}/prefix)
file(REMOVE_RECURSE ${PIPC_SCRATCH})
run(${CMAKE_COMMAND} --install ${PIPC_BUILD_DIR} --prefix ${prefix} --config ${PIPC_CONFIG})

# 0. What is installed: both libraries, the SONAME link, the preload library, the
#    headers, the CMake package and both pkg-config files.
file(GLOB_RECURSE pc_file ${prefix}/*/pipc.pc)
if(NOT pc_file)
  message(FATAL_ERROR "no pipc.pc under ${prefix}")
endif()
get_filename_component(pc_dir "${pc_file}" DIRECTORY)
get_filename_component(libdir "${pc_dir}" DIRECTORY)
foreach(file
    ${libdir}/libpipc.a ${libdir}/libpipc.so ${libdir}/libpipc.so.${PIPC_SOVERSION}
    ${libdir}/libpipc.so.${PIPC_VERSION} ${libdir}/libpipc-preload.so ${pc_dir}/pipc-static.pc
    ${libdir}/cmake/pipc/pipc-config.cmake
    ${prefix}/include/pipc/pipc.hpp ${prefix}/include/pipc/c/mqueue.h ${prefix}/include/pipc/compat/mqueue.h)
  if(NOT EXISTS ${file})
    message(FATAL_ERROR "not installed: ${file}")
  endif()
endforeach()
file(READ_SYMLINK ${libdir}/libpipc.so link)
if(NOT link STREQUAL "libpipc.so.${PIPC_SOVERSION}")
  message(FATAL_ERROR "libpipc.so points to ${link}")
endif()

# 1. CMake: find_package(pipc).
set(consumer ${PIPC_SCRATCH}/cmake-consumer)
run(${CMAKE_COMMAND} -S ${PIPC_CONSUMER_DIR} -B ${consumer} -DCMAKE_PREFIX_PATH=${prefix}
    -DCMAKE_C_COMPILER=${PIPC_C_COMPILER} -DCMAKE_CXX_COMPILER=${PIPC_CXX_COMPILER})
run(${CMAKE_COMMAND} --build ${consumer})
foreach(binary_and_linkage IN ITEMS "consumer_shared;shared" "consumer_static;static-pipc" "posix_program_c;shared")
  list(GET binary_and_linkage 0 binary)
  list(GET binary_and_linkage 1 linkage)
  expect_linkage(${consumer}/${binary} ${linkage})
  run(${consumer}/${binary})
endforeach()
file(READ ${consumer}/preload.txt cmake_preload)

# 2. pkg-config.
set(ENV{PKG_CONFIG_PATH} ${pc_dir})
function(pkg_config out)
  execute_process(COMMAND pkg-config ${ARGN} OUTPUT_VARIABLE flags RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config ${ARGN} failed")
  endif()
  message(STATUS "pkg-config ${ARGN}: ${flags}")
  separate_arguments(flags UNIX_COMMAND "${flags}")
  set(${out} "${flags}" PARENT_SCOPE)
endfunction()
pkg_config(pc_libdir --variable=libdir pipc)
pkg_config(pc_shared --cflags --libs pipc)
pkg_config(pc_static --static --cflags --libs pipc)
pkg_config(pc_archive --cflags --libs pipc-static)
set(consumer_cpp ${PIPC_CONSUMER_DIR}/consumer.cpp)
get_filename_component(posix_program ${PIPC_CONSUMER_DIR}/../c/posix_program.c ABSOLUTE)

# 2a. pipc.pc: the shared library (found at run time through an rpath).
run(${PIPC_CXX_COMPILER} -std=c++20 ${consumer_cpp} -o ${PIPC_SCRATCH}/pc-shared ${pc_shared} -Wl,-rpath,${pc_libdir})
expect_linkage(${PIPC_SCRATCH}/pc-shared shared)
run(${PIPC_SCRATCH}/pc-shared)
# C: an unmodified POSIX mq program with the compat header forced in, built with the C
# compiler and nothing but these flags (no -lstdc++: libpipc.so brings it).
run(${PIPC_C_COMPILER} -include pipc/compat/mqueue.h ${posix_program} -o ${PIPC_SCRATCH}/pc-posix-shared
    ${pc_shared} -Wl,-rpath,${pc_libdir})
expect_linkage(${PIPC_SCRATCH}/pc-posix-shared shared)
run(${PIPC_SCRATCH}/pc-posix-shared)

# 2b. pipc.pc --static: everything a static link needs, for a fully static program.
run(${PIPC_CXX_COMPILER} -std=c++20 -static ${consumer_cpp} -o ${PIPC_SCRATCH}/pc-fully-static ${pc_static})
expect_linkage(${PIPC_SCRATCH}/pc-fully-static fully-static)
run(${PIPC_SCRATCH}/pc-fully-static)

# 2c. pipc-static.pc: libpipc.a in an otherwise dynamic program, C++ and C.
run(${PIPC_CXX_COMPILER} -std=c++20 ${consumer_cpp} -o ${PIPC_SCRATCH}/pc-static ${pc_archive})
expect_linkage(${PIPC_SCRATCH}/pc-static static-pipc)
run(${PIPC_SCRATCH}/pc-static)
run(${PIPC_C_COMPILER} -include pipc/compat/mqueue.h ${posix_program} -o ${PIPC_SCRATCH}/pc-posix-static ${pc_archive})
expect_linkage(${PIPC_SCRATCH}/pc-posix-static static-pipc)
run(${PIPC_SCRATCH}/pc-posix-static)

# 3. The installed preload library, named by both the CMake package and pipc.pc, runs
#    a program that knows nothing of pipc.
pkg_config(pc_preload --variable=preload pipc)
foreach(path IN ITEMS "${cmake_preload}" "${pc_preload}")
  file(REAL_PATH "${path}" real)
  file(REAL_PATH "${libdir}/libpipc-preload.so" want)
  if(NOT real STREQUAL want)
    message(FATAL_ERROR "the preload library is named ${path}, installed at ${want}")
  endif()
endforeach()
if(PIPC_PLAIN_MQ)
  run(${CMAKE_COMMAND} -E env LD_PRELOAD=${pc_preload} ${PIPC_PLAIN_MQ})
endif()
