/*
 * Which device does the work. Programs call g4q_device_select() once: "auto" takes the CUDA GPU
 * when one is present and usable, and otherwise falls back to the CPU path with one clear line on
 * stderr saying why; "cuda" without a usable GPU is an error.
 */
#ifndef G4Q_BACKEND_DEVICE_H
#define G4Q_BACKEND_DEVICE_H

#include <stddef.h>

#include "base/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { G4Q_DEVICE_AUTO = 0, G4Q_DEVICE_CPU = 1, G4Q_DEVICE_CUDA = 2 } g4q_device_kind;

typedef struct g4q_device_info {
    int count;              /* CUDA devices visible (0 if none or no driver) */
    char name[256];         /* of device 0 */
    size_t total_memory;    /* bytes, device 0 */
    int cc_major, cc_minor; /* compute capability, device 0 */
    char why_none[256];     /* when count == 0: the runtime's reason */
} g4q_device_info;

/* Parses "auto", "cpu" or "cuda"; error names the bad value. */
g4q_status g4q_device_parse(g4q_ctx *ctx, const char *text, g4q_device_kind *out);
const char *g4q_device_name(g4q_device_kind k);

/* Asks the CUDA runtime what is present. Never fails: no GPU is count == 0. Always count == 0 in
 * builds without CUDA. */
void g4q_device_probe(g4q_device_info *info);

/* Resolves the request to CPU or CUDA as described above. */
g4q_status g4q_device_select(g4q_ctx *ctx, g4q_device_kind requested, g4q_device_kind *chosen,
                             g4q_device_info *info);

#ifdef __cplusplus
}
#endif
#endif
