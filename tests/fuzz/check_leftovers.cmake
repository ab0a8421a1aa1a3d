# Fails if a fuzz target left a queue (or a creation's temporary file) in /dev/shm:
# every file of theirs has "pipcfuzz." in its name.
file(GLOB leftovers /dev/shm/*pipcfuzz.*)
if(leftovers)
  message(FATAL_ERROR "fuzz targets left files in /dev/shm: ${leftovers}")
endif()
message(STATUS "no fuzz files in /dev/shm")
