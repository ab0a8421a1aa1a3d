// Symbol visibility for pipc's public API.
//
// pipc is compiled with hidden visibility; only what is marked PIPC_EXPORT is part of
// the shared library's ABI. A static build needs no marking, so the macro is empty
// unless PIPC_SHARED is defined (the CMake target sets it for shared builds and for
// their consumers).
#ifndef PIPC_EXPORT_HPP
#define PIPC_EXPORT_HPP

#if defined(PIPC_SHARED) && (defined(__GNUC__) || defined(__clang__))
#define PIPC_EXPORT __attribute__((visibility("default")))
#else
#define PIPC_EXPORT
#endif

#endif  // PIPC_EXPORT_HPP
