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
    int failed;                     // set when malloc failed; the operation then reports an error
} CProtobufC_Arena;

#define CPROTOBUFC_ARENA_ALIGN ((size_t)16)

static inline void *CProtobufC_arena_alloc_slow(CProtobufC_Arena *arena, size_t size) {
    size_t want = size + sizeof(CProtobufC_ArenaBlock) + CPROTOBUFC_ARENA_ALIGN;
    size_t capacity = arena->next_block_size;
    while (capacity < want) capacity *= 2;
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

/// Allocates `size` bytes aligned to 16. Returns NULL only when malloc fails.
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
    arena->failed = 0;
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

#endif
