#include "base/sha256.h"

#include <nettle/sha2.h>

_Static_assert(sizeof(struct sha256_ctx) <= sizeof(g4q_sha256),
               "g4q_sha256 storage too small for nettle's sha256_ctx");

void g4q_sha256_init(g4q_sha256 *h)
{
    sha256_init((struct sha256_ctx *)h->state);
}

void g4q_sha256_update(g4q_sha256 *h, const void *data, size_t len)
{
    sha256_update((struct sha256_ctx *)h->state, len, data);
}

void g4q_sha256_final(g4q_sha256 *h, uint8_t digest[G4Q_SHA256_BYTES], char hex[G4Q_SHA256_HEX])
{
    uint8_t d[G4Q_SHA256_BYTES];
    sha256_digest((struct sha256_ctx *)h->state, G4Q_SHA256_BYTES, d);
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < G4Q_SHA256_BYTES; i++) {
        if (digest)
            digest[i] = d[i];
        if (hex) {
            hex[2 * i] = digits[d[i] >> 4];
            hex[2 * i + 1] = digits[d[i] & 15];
        }
    }
    if (hex)
        hex[64] = '\0';
}

void g4q_sha256_hex(const void *data, size_t len, char hex[G4Q_SHA256_HEX])
{
    g4q_sha256 h;
    g4q_sha256_init(&h);
    g4q_sha256_update(&h, data, len);
    g4q_sha256_final(&h, NULL, hex);
}
