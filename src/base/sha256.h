/*
 * SHA-256 through Nettle (a well-kept library; nothing hand-written here).
 */
#ifndef G4Q_BASE_SHA256_H
#define G4Q_BASE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define G4Q_SHA256_BYTES 32
#define G4Q_SHA256_HEX 65 /* 64 hex digits and the terminating NUL */

/* Opaque storage big enough for Nettle's sha256_ctx (checked by a static assert in sha256.c). */
typedef struct g4q_sha256 {
    uint64_t state[16]; /* 128 bytes, 8-byte aligned */
} g4q_sha256;

void g4q_sha256_init(g4q_sha256 *h);
void g4q_sha256_update(g4q_sha256 *h, const void *data, size_t len);
/* Writes the 32-byte digest and, if hex is not NULL, its lowercase hex form. */
void g4q_sha256_final(g4q_sha256 *h, uint8_t digest[G4Q_SHA256_BYTES], char hex[G4Q_SHA256_HEX]);
/* One-shot convenience. */
void g4q_sha256_hex(const void *data, size_t len, char hex[G4Q_SHA256_HEX]);

#ifdef __cplusplus
}
#endif
#endif
