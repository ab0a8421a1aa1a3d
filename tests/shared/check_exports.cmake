# ctest script: checks the dynamic symbols of pipc's two shared objects.
#   LIBRARY  libpipc.so: a SONAME of libpipc.so.<major>; exports the C API (pipc_mq_*)
#            and the public C++ API (pipc::...), and nothing of pipc's internals
#            (pipc::engine, pipc::sys, pipc::capi, pipc::kernel) or of anyone else's
#   PRELOAD  libpipc-preload.so: exports glibc's mq_* names and nothing else
#   SONAME   the expected SONAME
#   NM, READELF
cmake_minimum_required(VERSION 3.25)

function(defined_symbols file demangle out)
  set(args -D --defined-only)
  if(demangle)
    list(APPEND args -C)
  endif()
  execute_process(COMMAND ${NM} ${args} ${file} RESULT_VARIABLE rc OUTPUT_VARIABLE text ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${NM} ${args} ${file} failed: ${err}")
  endif()
  # "0000000000001234 T name": keep the names, one list element each.
  string(REGEX REPLACE "(^|\n)[0-9a-f]+ [A-Za-z] " "\\1" text "${text}")
  string(REPLACE ";" "\\;" text "${text}")
  string(REPLACE "\n" ";" names "${text}")
  list(FILTER names EXCLUDE REGEX "^$")
  set(${out} "${names}" PARENT_SCOPE)
endfunction()

set(problems "")

# libpipc.so
execute_process(COMMAND ${READELF} -d ${LIBRARY} OUTPUT_VARIABLE dynamic)
if(NOT dynamic MATCHES "Library soname: \\[${SONAME}\\]")
  string(APPEND problems "\n  ${LIBRARY} has no SONAME ${SONAME}")
endif()

defined_symbols(${LIBRARY} ON exported)
list(LENGTH exported count)
set(public_prefix "^(pipc_mq_[a-z]+|pipc::|typeinfo for pipc::|typeinfo name for pipc::|vtable for pipc::)")
set(internal "pipc::(engine|sys|capi|kernel)::")
foreach(symbol IN LISTS exported)
  if(NOT symbol MATCHES "${public_prefix}")
    string(APPEND problems "\n  not pipc's public API: ${symbol}")
  elseif(symbol MATCHES "${internal}")
    string(APPEND problems "\n  internal: ${symbol}")
  endif()
endforeach()
foreach(wanted IN ITEMS
    pipc_mq_open pipc_mq_close pipc_mq_unlink pipc_mq_send pipc_mq_timedsend pipc_mq_receive
    pipc_mq_timedreceive pipc_mq_getattr pipc_mq_setattr pipc_mq_notify pipc_mq_pollable
    pipc_mq_send_begin pipc_mq_timedsend_begin pipc_mq_send_commit pipc_mq_send_abort
    pipc_mq_receive_begin pipc_mq_timedreceive_begin pipc_mq_receive_end
    "pipc::category()" "pipc::message_queue::~message_queue()" "pipc::shared_memory::~shared_memory()"
    "pipc::named_semaphore::~named_semaphore()" "pipc::mapping::~mapping()")
  if(NOT wanted IN_LIST exported)
    string(APPEND problems "\n  missing: ${wanted}")
  endif()
endforeach()

# libpipc-preload.so
defined_symbols(${PRELOAD} OFF preloaded)
set(glibc_names mq_open __mq_open_2 mq_close mq_unlink mq_send mq_timedsend mq_receive mq_timedreceive
                mq_getattr mq_setattr mq_getsetattr mq_notify)
foreach(symbol IN LISTS preloaded)
  if(NOT symbol IN_LIST glibc_names)
    string(APPEND problems "\n  libpipc-preload.so exports ${symbol}")
  endif()
endforeach()
foreach(wanted IN LISTS glibc_names)
  if(NOT wanted IN_LIST preloaded)
    string(APPEND problems "\n  libpipc-preload.so lacks ${wanted}")
  endif()
endforeach()

if(problems)
  message(FATAL_ERROR "exported symbols:${problems}")
endif()
list(LENGTH preloaded preloaded_count)
message(STATUS "ok: ${LIBRARY} (SONAME ${SONAME}) exports ${count} symbols, all public API; "
               "${PRELOAD} exports ${preloaded_count}: ${preloaded}")
