// Symbol visibility for pipc's public API.
//
// pipc is compiled with hidden visibility; only what is marked PIPC_EXPORT is part of
// the shared library's ABI (src/pipc.map filters the result once more). pipc itself is
// compiled with PIPC_SHARED, once, for libpipc.so and libpipc.a alike. The users of
// libpipc.so get it too (the CMake target pipc::pipc_shared and pipc.pc define it),
// which keeps the typeinfo of pipc's classes shared with code compiled with
// -fvisibility=hidden; the users of libpipc.a need no marking, and the macro is empty
// without PIPC_SHARED.
#ifndef PIPC_EXPORT_HPP
#define PIPC_EXPORT_HPP

#if defined(PIPC_SHARED) && (defined(__GNUC__) || defined(__clang__))
#define PIPC_EXPORT __attribute__((visibility("default")))
#else
#define PIPC_EXPORT
#endif

#endif  // PIPC_EXPORT_HPP
