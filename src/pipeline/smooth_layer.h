/*
 * Activation-aware smoothing of one decoder layer (src/quant/smooth.h) inside the calibration
 * pass: for each Linear input site asked for, the factors s are searched on the layer's activation
 * samples with the export's own quantizer, then folded into the tensors:
 *
 *   site      reads it                     producer (absorbs 1 ÷ s)
 *   ATTN_IN   q_proj, k_proj, v_proj        input_layernorm.weight      (w ÷ s)
 *   MLP_IN    gate_proj, up_proj            pre_feedforward_layernorm   (w ÷ s)
 *   DOWN_IN   down_proj                     up_proj's rows              (up ÷ s_row)
 *
 * (o_proj is not smoothed: its input comes through the weightless v_norm, nothing can absorb s.)
 * DOWN_IN is searched first, so that MLP_IN's search sees up_proj as the export will (rows
 * divided); every changed tensor is then rounded to bf16 once, from the checkpoint's values
 * times its column factors over its row factors. Every Linear reading a smoothed site is scaled,
 * quantized or kept BF16. The site's Hessian becomes that of x ÷ s, and its amax max_c amax_c ÷ s_c
 * (what the smoothed model's activations have, up to the rounding of the new norm weights).
 * Internal to src/pipeline.
 */
#ifndef G4Q_PIPELINE_SMOOTH_LAYER_H
#define G4Q_PIPELINE_SMOOTH_LAYER_H

#include "backend/wquant.h"
#include "calib/calibrate.h"
#include "export/plan.h"
#include "quant/smooth.h"

#define G4Q_LS_MAX 8 /* tensors one layer's smoothing can change */
#define G4Q_SMOOTH_GRID 10 /* α steps of the search */
/* The search runs on the CPU (quant/smooth.h); a site whose search would take more multiply-adds
 * than this (about a minute on 16 cores) is refused with G4Q_ERR_UNSUPPORTED before it starts.
 * The 25M-parameter referee needs 3e10 per site; the 12B's gate/up would need 3e15. */
#define G4Q_SMOOTH_MAX_MACS 2e12

typedef struct g4q_layer_smooth {
    int n;                           /* changed tensors */
    size_t item[G4Q_LS_MAX];         /* their plan items */
    uint16_t *data[G4Q_LS_MAX];      /* their new bf16 values (owned) */
    g4q_tensor t[G4Q_LS_MAX];        /* the item's source tensor with data[] as its data */
    float *hess[G4Q_OBS_COUNT];      /* the smoothed sites' Hessians (owned; held as the
                                        layer's g4q_calib_layer.hess[site] is), else NULL */
    float amax[G4Q_OBS_COUNT];       /* the smoothed sites' amaxes, else 0 */
    g4q_smooth_result res[G4Q_OBS_COUNT];
    unsigned done;                   /* 1u << site for each smoothed site */
} g4q_layer_smooth;

/* Smooths the sites in `sites` (a mask of 1u << ATTN_IN / MLP_IN / DOWN_IN) of layer L->layer:
 * L must carry their activation samples and, for Linears whose recipe rule needs one, their
 * Hessians. Quantizes on gpu when non-NULL (as g4q_quantize_item). A site none of whose readers
 * is quantized with smoothing awq is left alone. out is zeroed first; free it with g4q_layer_smooth_free, also
 * after an error. */
g4q_status g4q_layer_smooth_run(g4q_ctx *ctx, g4q_wquant_gpu *gpu, const g4q_plan *plan,
                                const g4q_calib_layer *L, unsigned sites, g4q_layer_smooth *out);

/* The item's tensor as smoothed, or NULL when the smoothing did not change it. */
const g4q_tensor *g4q_layer_smooth_tensor(const g4q_layer_smooth *ls, size_t item);

void g4q_layer_smooth_free(g4q_layer_smooth *ls);

#endif
