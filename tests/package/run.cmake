# ctest script: installs the built pipc into a scratch prefix, then builds and runs a
# consumer with find_package(pipc) and another with pkg-config. Any failure is fatal.
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "ok: ${ARGN}\n${out}")
endfunction()

set(prefix ${PIPC_SCRATCH}/prefix)
file(REMOVE_RECURSE ${PIPC_SCRATCH})
run(${CMAKE_COMMAND} --install ${PIPC_BUILD_DIR} --prefix ${prefix} --config ${PIPC_CONFIG})

# 1. CMake: find_package(pipc) -> pipc::pipc
run(${CMAKE_COMMAND} -S ${PIPC_CONSUMER_DIR} -B ${PIPC_SCRATCH}/cmake-consumer
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${PIPC_CXX_COMPILER})
run(${CMAKE_COMMAND} --build ${PIPC_SCRATCH}/cmake-consumer)
run(${PIPC_SCRATCH}/cmake-consumer/consumer)

# 2. pkg-config: the flags alone build the same program.
file(GLOB_RECURSE pc_file ${prefix}/*/pipc.pc)
if(NOT pc_file)
  message(FATAL_ERROR "no pipc.pc under ${prefix}")
endif()
get_filename_component(pc_dir "${pc_file}" DIRECTORY)
set(ENV{PKG_CONFIG_PATH} ${pc_dir})
execute_process(COMMAND pkg-config --cflags --libs pipc OUTPUT_VARIABLE flags RESULT_VARIABLE rc
                OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config --cflags --libs pipc failed")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(${PIPC_CXX_COMPILER} -std=c++20 ${PIPC_CONSUMER_DIR}/consumer.cpp -o ${PIPC_SCRATCH}/pc-consumer ${flags})
run(${PIPC_SCRATCH}/pc-consumer)

# 3. C: an unmodified POSIX mq program, with the compat header forced in, built with
#    the C compiler and nothing but the pkg-config flags; it runs on the engine.
get_filename_component(posix_program ${PIPC_CONSUMER_DIR}/../c/posix_program.c ABSOLUTE)
if(NOT EXISTS ${prefix}/include/pipc/c/mqueue.h OR NOT EXISTS ${prefix}/include/pipc/compat/mqueue.h)
  message(FATAL_ERROR "the C API headers were not installed under ${prefix}/include/pipc")
endif()
run(${PIPC_C_COMPILER} -include pipc/compat/mqueue.h ${posix_program} -o ${PIPC_SCRATCH}/pc-posix-program ${flags})
run(${PIPC_SCRATCH}/pc-posix-program)
