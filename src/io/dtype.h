/*
 * Tensor element types as they appear in safetensors headers.
 */
#ifndef G4Q_IO_DTYPE_H
#define G4Q_IO_DTYPE_H

#include <stddef.h>

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(enum, safetensors name, bytes per element) */
#define G4Q_DTYPE_TABLE(X)                                                                         \
    X(G4Q_DT_BF16, "BF16", 2)                                                                      \
    X(G4Q_DT_F16, "F16", 2)                                                                        \
    X(G4Q_DT_F32, "F32", 4)                                                                        \
    X(G4Q_DT_F8_E4M3, "F8_E4M3", 1)                                                                \
    X(G4Q_DT_U8, "U8", 1)                                                                          \
    X(G4Q_DT_I8, "I8", 1)                                                                          \
    X(G4Q_DT_I32, "I32", 4)                                                                        \
    X(G4Q_DT_I64, "I64", 8)

typedef enum {
#define G4Q_X_DT(e, name, size) e,
    G4Q_DTYPE_TABLE(G4Q_X_DT)
#undef G4Q_X_DT
        G4Q_DT_COUNT
} g4q_dtype;

/* "BF16" etc. */
const char *g4q_dtype_name(g4q_dtype dt);
/* Bytes per element (1, 2, 4 or 8). */
size_t g4q_dtype_size(g4q_dtype dt);
/* Parses a safetensors dtype string; returns -1 when unknown (the caller reports it). */
int g4q_dtype_parse(const char *name);

#ifdef __cplusplus
}
#endif
#endif
