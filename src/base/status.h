/*
 * Status codes of libgemma4q: one table, one name and one meaning per code.
 *
 * Library functions return g4q_status. A non-OK status is always accompanied by a message in the
 * context that was passed (g4q_ctx_error()), which names the file, tensor or key concerned.
 */
#ifndef G4Q_BASE_STATUS_H
#define G4Q_BASE_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(enum name, exit code used by the tools, short meaning) */
#define G4Q_STATUS_TABLE(X)                                                                        \
    X(G4Q_OK, 0, "ok")                                                                             \
    X(G4Q_ERR_USAGE, 2, "bad command-line usage")                                                  \
    X(G4Q_ERR_IO, 3, "input/output error")                                                         \
    X(G4Q_ERR_NOT_FOUND, 4, "file or item not found")                                              \
    X(G4Q_ERR_FORMAT, 5, "malformed file")                                                         \
    X(G4Q_ERR_SHAPE, 6, "wrong shape or dtype")                                                    \
    X(G4Q_ERR_UNSUPPORTED, 7, "unsupported model or feature")                                      \
    X(G4Q_ERR_INVALID, 8, "invalid value")                                                         \
    X(G4Q_ERR_NOMEM, 9, "out of memory")                                                           \
    X(G4Q_ERR_NOSPACE, 10, "no space left on device")                                              \
    X(G4Q_ERR_EXISTS, 11, "output already exists")                                                 \
    X(G4Q_ERR_NUMERIC, 12, "non-finite or out-of-range number")                                    \
    X(G4Q_ERR_NEEDS_CALIBRATION, 13, "needs calibration")                                          \
    X(G4Q_ERR_CUDA, 14, "CUDA error")                                                              \
    X(G4Q_ERR_INTERNAL, 15, "internal error")

typedef enum {
#define G4Q_X_ENUM(name, code, text) name,
    G4Q_STATUS_TABLE(G4Q_X_ENUM)
#undef G4Q_X_ENUM
        G4Q_STATUS_COUNT
} g4q_status;

/* "G4Q_ERR_FORMAT" etc.; "G4Q_UNKNOWN_STATUS" for out-of-range values. */
const char *g4q_status_name(g4q_status s);
/* Short human meaning: "malformed file". */
const char *g4q_status_text(g4q_status s);
/* Process exit code a tool should use for this status (0 for G4Q_OK). */
int g4q_status_exit_code(g4q_status s);

#ifdef __cplusplus
}
#endif
#endif
