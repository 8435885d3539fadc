/* The calibration tests' layer hook (calib_hook.h). */
#include "calib_hook.h"

#include <stdlib.h>
#include <string.h>

#include "base/bf16.h"

static uint64_t fnv64(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

void hook_release(hook_state *hs)
{
    for (int i = 0; i < 7; i++) {
        free(hs->buf[i]);
        hs->buf[i] = NULL;
    }
}

g4q_status hook_on_layer(void *user, const g4q_calib_layer *ly, g4q_layer_weights *replace)
{
    hook_state *hs = user;
    hs->calls++;
    for (int site = 0; site < G4Q_OBS_COUNT; site++)
        if (ly->hess[site].h)
            hs->digest[ly->layer][site] =
                fnv64(ly->hess[site].h, g4q_hess_count(ly->hess[site].n, ly->hess[site].block) * 4);
    if (!replace) return G4Q_OK;
    hook_release(hs);
    const g4q_tensor **slot[7] = {&replace->q_proj,   &replace->k_proj,    &replace->v_proj,
                                  &replace->o_proj,   &replace->gate_proj, &replace->up_proj,
                                  &replace->down_proj};
    for (int i = 0; i < 7; i++) {
        const g4q_tensor *src = *slot[i];
        if (!src) continue;
        hs->t[i] = *src;
        hs->buf[i] = malloc(src->nbytes);
        if (!hs->buf[i]) return G4Q_ERR_NOMEM;
        for (uint64_t e = 0; e < src->numel; e++) {
            uint16_t v;
            memcpy(&v, (const unsigned char *)src->data + 2 * e, 2);
            hs->buf[i][e] = g4q_f32_to_bf16(g4q_bf16_to_f32(v) * 0.5f);
        }
        hs->t[i].data = hs->buf[i];
        *slot[i] = &hs->t[i];
    }
    return G4Q_OK;
}
