// CZlib: zlib (zlib1g-dev), for gRPC's gzip message compression.
//
// Why this shim exists: deflateInit2 and inflateInit2 are function-like macros (they pass the
// library version and struct size), which Swift cannot import.
#ifndef CZLIB_H
#define CZLIB_H
#include <zlib.h>

/// deflateInit2 for gzip framing (window bits 15 + 16).
static inline int CZlib_deflateInitGzip(z_stream *stream) {
    return deflateInit2(stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}

/// inflateInit2 accepting gzip framing (window bits 15 + 16).
static inline int CZlib_inflateInitGzip(z_stream *stream) {
    return inflateInit2(stream, 15 + 16);
}
#endif
