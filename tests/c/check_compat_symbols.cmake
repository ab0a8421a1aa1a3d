# ctest script: checks that a POSIX program built with pipc/compat/mqueue.h calls
# pipc's mq_* and none of glibc's, even under _FORTIFY_SOURCE.
#   COMPAT_OBJECT  the program's object file, built with the compat header
#   GLIBC_OBJECT   the same program built without it (the control)
#   NM             the nm to use
function(undefined_symbols object out)
  execute_process(COMMAND ${NM} -u ${object} RESULT_VARIABLE rc OUTPUT_VARIABLE text ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${NM} -u ${object} failed: ${err}")
  endif()
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

# An undefined symbol of glibc's queue API, as nm -u prints it: "U mq_open",
# "U __mq_open_2", possibly with a version suffix.
set(glibc_mq "(^|\n)[ \t]*U (__)?mq_[a-z_0-9]+")

undefined_symbols(${GLIBC_OBJECT} control)
if(NOT control MATCHES "${glibc_mq}")
  message(FATAL_ERROR "the control object refers to no glibc mq_* symbol, so this check proves nothing:\n${control}")
endif()

undefined_symbols(${COMPAT_OBJECT} compat)
if(compat MATCHES "${glibc_mq}")
  string(REGEX MATCH "${glibc_mq}" found "${compat}")
  message(FATAL_ERROR "built with pipc/compat/mqueue.h, the program still refers to glibc's${found}:\n${compat}")
endif()
foreach(f open close unlink send receive timedreceive getattr setattr)
  if(NOT compat MATCHES "U pipc_mq_${f}(\n|$)")
    message(FATAL_ERROR "the program does not call pipc_mq_${f}:\n${compat}")
  endif()
endforeach()
message(STATUS "ok: ${COMPAT_OBJECT} calls pipc_mq_* only; the control calls glibc's")
