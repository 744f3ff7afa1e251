// CProtobufC: the system library protobuf-c (libprotobuf-c-dev), imported into Swift.
//
// Why this shim exists:
// - Swift cannot import the allocator plumbing below as macros or as a struct initializer with
//   function pointers, so it is re-expressed as static inline functions.
// - protobuf-c allocates through a ProtobufCAllocator. Decoding a message with the default
//   allocator costs one malloc per string, bytes field, sub-message and repeated array, and the
//   matching free_unpacked walk. The arena below makes every allocation a pointer bump into a
//   block that the Swift side can place on its stack; releasing the arena releases everything at
//   once, on every path, so nothing can leak.
// - protobuf-c's unpack recurses on the C stack without a limit and stores strings as
//   NUL-terminated `char *`, so a string holding U+0000 would come back cut short.
//   CProtobufC_scan walks the input first, in C because every decode of a message with strings
//   pays for it: it bounds the nesting depth and finds U+0000 inside string fields, and the
//   Swift side refuses such input (WireDiagnostics then names the field).
// Every function here is prefixed with the module name so it cannot clash with the library's own.

#ifndef CPROTOBUFC_H
#define CPROTOBUFC_H

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if PROTOBUF_C_VERSION_NUMBER < 1003000
#error "protobuf-c 1.3.0 or newer is required (Debian 12 ships 1.4.1)"
#endif

// MARK: - Arena allocator

/// One block of arena memory. Blocks after the first are malloc'd and chained for release.
typedef struct CProtobufC_ArenaBlock {
    struct CProtobufC_ArenaBlock *next;
    size_t capacity;
} CProtobufC_ArenaBlock;

/// A bump allocator. `first` may point to caller-owned memory (for example a stack buffer);
/// overflow blocks are malloc'd, doubling in size, and released by CProtobufC_arena_release.
typedef struct CProtobufC_Arena {
    ProtobufCAllocator allocator;   // handed to protobuf_c_message_unpack
    unsigned char *cursor;          // next free byte in the current block
    unsigned char *end;             // one past the current block
    CProtobufC_ArenaBlock *overflow;// malloc'd blocks, newest first
    size_t next_block_size;         // size of the next overflow block
    size_t allocated_bytes;         // total bytes handed out (for limits and statistics)
    size_t limit;                   // allocations beyond this many bytes fail (SIZE_MAX: none)
    int failed;                     // set when malloc failed or the limit was hit
    int over_limit;                 // set when an allocation would have passed `limit`
    const char *nul_field;          // first string field written with a U+0000 in it (encode)
    size_t nul_field_length;        // length of `nul_field`'s name
} CProtobufC_Arena;

#define CPROTOBUFC_ARENA_ALIGN ((size_t)16)

static inline void *CProtobufC_arena_alloc_slow(CProtobufC_Arena *arena, size_t size) {
    if (size > arena->limit || arena->allocated_bytes > arena->limit - size) {
        arena->failed = 1;
        arena->over_limit = 1;
        return NULL;
    }
    size_t want = size + sizeof(CProtobufC_ArenaBlock) + CPROTOBUFC_ARENA_ALIGN;
    size_t capacity = arena->next_block_size;
    while (capacity < want) capacity *= 2;
    if (arena->limit != SIZE_MAX) {
        // A block never holds more than the limit still allows, so memory stays near the limit.
        size_t allowed = (arena->limit - arena->allocated_bytes) + sizeof(CProtobufC_ArenaBlock) + CPROTOBUFC_ARENA_ALIGN;
        if (capacity > allowed) capacity = allowed > want ? allowed : want;
    }
    CProtobufC_ArenaBlock *block = (CProtobufC_ArenaBlock *)malloc(capacity);
    if (block == NULL) { arena->failed = 1; return NULL; }
    block->next = arena->overflow;
    block->capacity = capacity;
    arena->overflow = block;
    arena->next_block_size = capacity * 2;
    unsigned char *start = (unsigned char *)block + sizeof(CProtobufC_ArenaBlock);
    uintptr_t aligned = ((uintptr_t)start + CPROTOBUFC_ARENA_ALIGN - 1) & ~(uintptr_t)(CPROTOBUFC_ARENA_ALIGN - 1);
    arena->cursor = (unsigned char *)aligned + size;
    arena->end = (unsigned char *)block + capacity;
    arena->allocated_bytes += size;
    return (void *)aligned;
}

/// Allocates `size` bytes aligned to 16. Returns NULL when malloc fails or the arena's limit is
/// reached (protobuf-c's unpack then fails cleanly). Only the slow path checks the limit: it
/// never makes a block larger than the limit still allows, so the fast path stays within it.
static inline void *CProtobufC_arena_alloc(CProtobufC_Arena *arena, size_t size) {
    uintptr_t aligned = ((uintptr_t)arena->cursor + CPROTOBUFC_ARENA_ALIGN - 1) & ~(uintptr_t)(CPROTOBUFC_ARENA_ALIGN - 1);
    if (size <= (size_t)(arena->end - (unsigned char *)aligned) && aligned >= (uintptr_t)arena->cursor) {
        arena->cursor = (unsigned char *)aligned + size;
        arena->allocated_bytes += size;
        return (void *)aligned;
    }
    return CProtobufC_arena_alloc_slow(arena, size);
}

static inline void *CProtobufC_arena_allocator_alloc(void *data, size_t size) {
    return CProtobufC_arena_alloc((CProtobufC_Arena *)data, size);
}

static inline void CProtobufC_arena_allocator_free(void *data, void *pointer) {
    // Arena memory is released all at once.
    (void)data; (void)pointer;
}

/// Prepares an arena whose first block is `buffer` (may be NULL with `size` 0).
static inline void CProtobufC_arena_init(CProtobufC_Arena *arena, void *buffer, size_t size) {
    arena->allocator.alloc = CProtobufC_arena_allocator_alloc;
    arena->allocator.free = CProtobufC_arena_allocator_free;
    arena->allocator.allocator_data = arena;
    arena->cursor = (unsigned char *)buffer;
    arena->end = (unsigned char *)buffer + size;
    arena->overflow = NULL;
    arena->next_block_size = size < 4096 ? 4096 : size * 2;
    arena->allocated_bytes = 0;
    arena->limit = SIZE_MAX;
    arena->failed = 0;
    arena->over_limit = 0;
    arena->nul_field = NULL;
    arena->nul_field_length = 0;
}

/// Frees every overflow block. The arena must not be used afterwards.
static inline void CProtobufC_arena_release(CProtobufC_Arena *arena) {
    CProtobufC_ArenaBlock *block = arena->overflow;
    while (block != NULL) {
        CProtobufC_ArenaBlock *next = block->next;
        free(block);
        block = next;
    }
    arena->overflow = NULL;
    arena->cursor = arena->end = NULL;
}

/// Copies `length` bytes into the arena and appends a NUL, for protobuf-c's `char *` strings.
static inline char *CProtobufC_arena_strndup(CProtobufC_Arena *arena, const void *bytes, size_t length) {
    char *copy = (char *)CProtobufC_arena_alloc(arena, length + 1);
    if (copy == NULL) return NULL;
    if (length > 0) memcpy(copy, bytes, length);
    copy[length] = '\0';
    return copy;
}

/// Copies `length` bytes into the arena (for bytes fields and repeated scalar arrays).
static inline void *CProtobufC_arena_memdup(CProtobufC_Arena *arena, const void *bytes, size_t length) {
    if (length == 0) return NULL;
    void *copy = CProtobufC_arena_alloc(arena, length);
    if (copy == NULL) return NULL;
    memcpy(copy, bytes, length);
    return copy;
}

/// The empty string protobuf-c uses as the default of string fields.
static inline char *CProtobufC_empty_string(void) { return (char *)""; }

/// Copies a string field's UTF-8 bytes for protobuf-c, noting the field (`field`, a name of
/// `field_length` bytes that outlives the arena) if the bytes hold a U+0000: protobuf-c would
/// write the string only up to it, so the encoder refuses the message instead.
static inline char *CProtobufC_arena_string(CProtobufC_Arena *arena, const void *bytes, size_t length,
                                            const char *field, size_t field_length) {
    if (length > 0 && arena->nul_field == NULL && memchr(bytes, 0, length) != NULL) {
        arena->nul_field = field;
        arena->nul_field_length = field_length;
    }
    return CProtobufC_arena_strndup(arena, bytes, length);
}

// MARK: - Input scan before unpack

enum {
    CPROTOBUFC_SCAN_OK = 0,
    CPROTOBUFC_SCAN_TOO_DEEP = 1,   // messages nested deeper than the limit
    CPROTOBUFC_SCAN_NUL = 2,        // a string field holds a U+0000
    CPROTOBUFC_SCAN_MALFORMED = 3,  // not valid wire format (protobuf-c would refuse it too)
};

/// Reads a varint; returns the number of bytes it took, 0 if it is cut off or too long.
static inline size_t CProtobufC_scan_varint(const uint8_t *data, size_t length, uint64_t *value) {
    uint64_t result = 0;
    for (size_t index = 0; index < length && index < 10; index++) {
        result |= (uint64_t)(data[index] & 0x7f) << (7 * index);
        if ((data[index] & 0x80) == 0) { *value = result; return index + 1; }
    }
    return 0;
}

/// Walks one message's bytes: string fields are searched for U+0000, message fields are walked
/// in turn, at most `depth_left` levels further down (so this recursion is bounded, unlike
/// protobuf-c's). Unknown fields are skipped: protobuf-c keeps them as bytes.
static inline int CProtobufC_scan(const ProtobufCMessageDescriptor *descriptor, const uint8_t *data, size_t length,
                                  unsigned depth_left) {
    size_t position = 0;
    while (position < length) {
        uint64_t tag;
        size_t used = CProtobufC_scan_varint(data + position, length - position, &tag);
        if (used == 0) return CPROTOBUFC_SCAN_MALFORMED;
        position += used;
        uint64_t value;
        switch (tag & 7) {
        case 0:
            used = CProtobufC_scan_varint(data + position, length - position, &value);
            if (used == 0) return CPROTOBUFC_SCAN_MALFORMED;
            position += used;
            break;
        case 1:
            if (length - position < 8) return CPROTOBUFC_SCAN_MALFORMED;
            position += 8;
            break;
        case 5:
            if (length - position < 4) return CPROTOBUFC_SCAN_MALFORMED;
            position += 4;
            break;
        case 2: {
            used = CProtobufC_scan_varint(data + position, length - position, &value);
            if (used == 0) return CPROTOBUFC_SCAN_MALFORMED;
            position += used;
            if (value > length - position) return CPROTOBUFC_SCAN_MALFORMED;
            const uint8_t *payload = data + position;
            size_t payload_length = (size_t)value;
            position += payload_length;
            if (tag >> 3 > 0x1fffffff) return CPROTOBUFC_SCAN_MALFORMED;
            const ProtobufCFieldDescriptor *field =
                protobuf_c_message_descriptor_get_field(descriptor, (unsigned)(tag >> 3));
            if (field == NULL) break;
            if (field->type == PROTOBUF_C_TYPE_STRING) {
                if (payload_length > 0 && memchr(payload, 0, payload_length) != NULL) return CPROTOBUFC_SCAN_NUL;
            } else if (field->type == PROTOBUF_C_TYPE_MESSAGE && field->descriptor != NULL) {
                if (depth_left == 0) return CPROTOBUFC_SCAN_TOO_DEEP;
                int nested = CProtobufC_scan((const ProtobufCMessageDescriptor *)field->descriptor, payload, payload_length,
                                             depth_left - 1);
                if (nested != CPROTOBUFC_SCAN_OK) return nested;
            }
            break;
        }
        default:
            return CPROTOBUFC_SCAN_MALFORMED;  // groups (3, 4) and the undefined wire types
        }
    }
    return CPROTOBUFC_SCAN_OK;
}

#endif
