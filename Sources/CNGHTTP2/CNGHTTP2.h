// CNGHTTP2: the system library nghttp2 (libnghttp2-dev), imported into Swift.
//
// Why this shim exists: the RPC runtime drives nghttp2 sans-I/O (mem_recv / mem_send). Swift
// cannot import the library's function-like macros or read the version macros as integers in
// every context, so what the Swift layer needs is re-expressed here as static inline functions,
// each prefixed with the module name.

#ifndef CNGHTTP2_H
#define CNGHTTP2_H

#include <nghttp2/nghttp2.h>
#include <stdint.h>

#if NGHTTP2_VERSION_NUM < 0x012b00
#error "nghttp2 1.43 or newer is required (Debian 12 ships 1.52)"
#endif

/// Version of the nghttp2 headers (0xMMmmpp).
static inline uint32_t CNGHTTP2_version_num(void) { return NGHTTP2_VERSION_NUM; }

/// Whether the library enforces its own rapid-reset limit (added in nghttp2 1.57). When it does
/// not, the Swift HTTP/2 layer enforces one itself.
static inline int CNGHTTP2_has_builtin_rapid_reset_limit(void) {
#if NGHTTP2_VERSION_NUM >= 0x013900
    return 1;
#else
    return 0;
#endif
}

/// Builds a header name/value pair without copying flags (nghttp2_nv is a plain struct, but
/// building it in C keeps the casts from uint8_t* in one reviewed place).
static inline nghttp2_nv CNGHTTP2_make_nv(const uint8_t *name, size_t name_length,
                                          const uint8_t *value, size_t value_length,
                                          uint8_t flags) {
    nghttp2_nv nv;
    nv.name = (uint8_t *)name;
    nv.namelen = name_length;
    nv.value = (uint8_t *)value;
    nv.valuelen = value_length;
    nv.flags = flags;
    return nv;
}

#endif
