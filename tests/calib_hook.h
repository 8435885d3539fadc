/* A calibration layer hook shared by the calibration tests (test_calibrate, test_calibrate_gpu):
 * it records a digest of every Hessian it is handed, counts its calls, and in sequential mode
 * returns the layer's Linears halved (exact in bf16) as the replacement, so that the later layers
 * see other activations than the BF16 model's. */
#ifndef G4Q_TESTS_CALIB_HOOK_H
#define G4Q_TESTS_CALIB_HOOK_H

#include <stdint.h>

#include "calib/calibrate.h"

typedef struct hook_state {
    uint64_t digest[G4Q_MAX_LAYERS][G4Q_OBS_COUNT];
    int calls;
    g4q_tensor t[7];
    uint16_t *buf[7]; /* the halved copies, owned; freed by hook_release */
} hook_state;

/* g4q_calib_hooks.layer_done with user = a hook_state. */
g4q_status hook_on_layer(void *user, const g4q_calib_layer *ly, g4q_layer_weights *replace);

/* Frees the replacement copies (the state stays usable). */
void hook_release(hook_state *hs);

#endif
