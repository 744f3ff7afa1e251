// CJansson: jansson (libjansson-dev), one of the JSON parsers measured against the project's own
// scanner (docs/json-parser.md). json_typeof and json_decref are macros or macro-dependent
// inline functions, so Swift gets them here as static inline functions.
#ifndef CJANSSON_H
#define CJANSSON_H
#include <jansson.h>
static inline int CJansson_typeof(const json_t *value) { return (int)json_typeof(value); }
static inline void CJansson_decref(json_t *value) { json_decref(value); }
#endif
