/*
 * Output directories that appear whole or not at all. g4q_outdir_begin() creates OUT.partial;
 * writers put every file there; g4q_outdir_commit() renames it to OUT. On any error the caller
 * calls g4q_outdir_abort(), which deletes OUT.partial, so nothing half-written is left under OUT.
 */
#ifndef G4Q_BASE_OUTDIR_H
#define G4Q_BASE_OUTDIR_H

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4q_outdir {
    char final_path[4096];   /* OUT */
    char partial_path[4096 + 16]; /* OUT.partial: where files are written */
    int open;
} g4q_outdir;

/* Creates OUT.partial (removing a stale one from an earlier crash). Fails with G4Q_ERR_EXISTS if
 * OUT exists, unless overwrite is set, in which case OUT is replaced only at commit. */
g4q_status g4q_outdir_begin(g4q_ctx *ctx, g4q_outdir *od, const char *out, int overwrite);

/* Full path of a file inside the partial directory. */
g4q_status g4q_outdir_path(g4q_ctx *ctx, const g4q_outdir *od, const char *name, char *buf,
                           size_t n);

/* fsyncs nothing (the data were written with checked writes) and renames OUT.partial to OUT,
 * removing an old OUT first when overwriting. */
g4q_status g4q_outdir_commit(g4q_ctx *ctx, g4q_outdir *od);

/* Removes OUT.partial. Safe to call after commit or on a never-begun outdir (no-op). Keeps the
 * context's error message intact. */
void g4q_outdir_abort(g4q_outdir *od);

#ifdef __cplusplus
}
#endif
#endif
