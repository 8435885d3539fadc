#include "base/outdir.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/sys.h"

g4q_status g4q_outdir_begin(g4q_ctx *ctx, g4q_outdir *od, const char *out, int overwrite)
{
    memset(od, 0, sizeof *od);
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/')
        n--;
    if (n == 0 || n + sizeof ".partial" > sizeof od->final_path)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "'%s': bad output path", out);
    memcpy(od->final_path, out, n);
    od->final_path[n] = '\0';
    snprintf(od->partial_path, sizeof od->partial_path, "%s.partial", od->final_path);
    if (!overwrite && g4q_path_exists(od->final_path))
        return g4q_fail(ctx, G4Q_ERR_EXISTS, "%s: already exists (remove it or pass --force)",
                        od->final_path);
    G4Q_TRY(g4q_remove_tree(ctx, od->partial_path));
    G4Q_TRY(g4q_mkdir_p(ctx, od->partial_path));
    od->open = 1;
    return G4Q_OK;
}

g4q_status g4q_outdir_path(g4q_ctx *ctx, const g4q_outdir *od, const char *name, char *buf,
                           size_t n)
{
    return g4q_path_join(ctx, buf, n, od->partial_path, name);
}

g4q_status g4q_outdir_commit(g4q_ctx *ctx, g4q_outdir *od)
{
    if (!od->open)
        return g4q_fail(ctx, G4Q_ERR_INTERNAL, "output directory was not begun");
    if (g4q_path_exists(od->final_path))
        G4Q_TRY(g4q_remove_tree(ctx, od->final_path));
    if (rename(od->partial_path, od->final_path) != 0)
        return g4q_fail(ctx, G4Q_ERR_IO, "%s: cannot rename to %s: %s", od->partial_path,
                        od->final_path, strerror(errno));
    od->open = 0;
    return G4Q_OK;
}

void g4q_outdir_abort(g4q_outdir *od)
{
    if (!od || !od->open)
        return;
    g4q_ctx scratch; /* cleanup must not overwrite the error being reported */
    g4q_ctx_init(&scratch);
    g4q_remove_tree(&scratch, od->partial_path);
    od->open = 0;
}
