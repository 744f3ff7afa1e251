// CJansson: the system library jansson (libjansson-dev), the JSON parser behind the canonical
// proto3 JSON mapping (chosen by measurement; see docs/json-parser.md).
//
// Why this shim exists: jansson's accessors json_typeof, json_is_* and json_decref are
// function-like macros or inline functions that depend on macros; Swift gets them here as
// static inline functions prefixed with the module name.

#ifndef CJANSSON_H
#define CJANSSON_H

#include <jansson.h>

static inline int CJansson_typeof(const json_t *value) { return (int)json_typeof(value); }
static inline void CJansson_decref(json_t *value) { json_decref(value); }

#endif
