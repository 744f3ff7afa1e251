// CNGHTTP2: the system library nghttp2 (libnghttp2-dev), imported into Swift.
//
// Why this shim exists: the HTTP2 layer builds nghttp2_nv pairs from byte buffers, a cast-heavy
// C idiom kept in one reviewed place; and the version guard below states the oldest nghttp2 the
// layer's own protections were written against (nghttp2 1.52 has no rapid-reset or
// CONTINUATION-flood limits, so the Swift layer enforces them whatever the version).

#ifndef CNGHTTP2_H
#define CNGHTTP2_H

#include <nghttp2/nghttp2.h>
#include <stdint.h>

#if NGHTTP2_VERSION_NUM < 0x012b00
#error "nghttp2 1.43 or newer is required (Debian 12 ships 1.52)"
#endif

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
