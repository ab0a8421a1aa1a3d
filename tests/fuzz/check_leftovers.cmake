# Fails if a fuzz target left a queue in /dev/shm. Every file of theirs is named
# pipc.mq.pipcfuzz.<target>.<pid>...; the files of a process that still runs are
# someone else's fuzzing, not leftovers. (A target that starts removes what dead
# processes of its own left, so a crash in an earlier run by hand does not count.)
file(GLOB files /dev/shm/pipc.mq.pipcfuzz.*)
set(leftovers)
foreach(f IN LISTS files)
  if(f MATCHES "pipcfuzz\\.[a-z]+\\.([0-9]+)" AND NOT EXISTS /proc/${CMAKE_MATCH_1})
    list(APPEND leftovers ${f})
  endif()
endforeach()
if(leftovers)
  message(FATAL_ERROR "fuzz targets left files in /dev/shm: ${leftovers}")
endif()
message(STATUS "no fuzz files left in /dev/shm")
