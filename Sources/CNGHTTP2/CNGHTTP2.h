// CNGHTTP2: the system library nghttp2 (libnghttp2-dev), imported into Swift.
//
// Why this shim exists: the HTTP2 layer builds nghttp2_nv pairs from byte buffers, a cast-heavy
// C idiom kept in one reviewed place; the version guard below states the oldest nghttp2 the
// layer's own protections were written against (upstream nghttp2 1.52 has no rapid-reset or
// CONTINUATION-flood limits, so the Swift layer enforces them whatever the version); and the
// one nghttp2 limit that must be turned off is turned off here, where the library has it.

#ifndef CNGHTTP2_H
#define CNGHTTP2_H

#include <nghttp2/nghttp2.h>
#include <dlfcn.h>
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

/// Turns off nghttp2's own limit on the peer's RST_STREAM frames (server side), where the
/// library has one: nghttp2 1.57, and Debian's 1.52 since its CVE-2023-44487 update, end the
/// connection with GOAWAY(INTERNAL_ERROR) after 1,000 RST_STREAM frames (refilled at 33 a second),
/// whatever the resets cost; a healthy client whose calls expire by the thousand sends that many.
/// HTTP2Connection bounds what resets gain instead (see HTTP2Limits.wastedResetBurst). The setter
/// is looked up at run time: the same version number (1.52.0) comes with and without it.
/// Returns whether nghttp2 had the limit.
static inline int CNGHTTP2_disable_stream_reset_rate_limit(nghttp2_option *option) {
    typedef void (*rate_limit_setter)(nghttp2_option *, uint64_t, uint64_t);
    void *process = dlopen(NULL, RTLD_LAZY);
    if (process == NULL) return 0;
    rate_limit_setter set = (rate_limit_setter)dlsym(process, "nghttp2_option_set_stream_reset_rate_limit");
    dlclose(process);
    if (set == NULL) return 0;
    set(option, UINT64_MAX, UINT64_MAX);
    return 1;
}

#endif
