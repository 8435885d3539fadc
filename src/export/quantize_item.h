/*
 * One planned tensor -> its output buffers. bufs[k] receives output k of the item (plan.h order
 * and sizes: e.g. NVFP4 ModelOpt: packed codes, block scales, weight_scale_2). Input scales are not
 * produced here (calibration).
 */
#ifndef G4Q_EXPORT_QUANTIZE_ITEM_H
#define G4Q_EXPORT_QUANTIZE_ITEM_H

#include "export/plan.h"

/* CPU reference path. group_amax: the fused group's shared amax when it->group >= 0 (else
 * ignored: the tensor's own amax is used). */
g4q_status g4q_quantize_item_cpu(g4q_ctx *ctx, const g4q_plan_item *it, float group_amax,
                                 void **bufs);

#endif
