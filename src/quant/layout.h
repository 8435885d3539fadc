/*
 * Stored tensor layouts: for every export format, the tensors one quantized Linear module <m>
 * (weight W [rows = out, cols = in]) is stored as — suffix, dtype, shape as a function of
 * (rows, cols, group) and role — declared once, in one table (layout.c). docs/formats.md §2-§7
 * is the normative description of their bytes; this table is its tensor list in code.
 *
 * Users:
 *   - the plan derives each quantized item's output tensors from it (src/export/plan.c);
 *   - the weight quantizers fill one buffer per tensor, in table order and written shape
 *     (src/backend/wquant.h);
 *   - the runtime loader finds and checks a module's tensors through it (src/model/qlinear.c,
 *     g4q_layout_find), then checks the values it relies on;
 *   - the export diff classifies modules by it (src/export/diff.c).
 * The export checker (src/export/check.c) deliberately does NOT use it: it re-derives every
 * expectation from formats.md and the loader rules on its own, so that a mistake here is caught
 * there.
 *
 * Writing vs reading. Each tensor has one written form (`dtype`, `ndim`, `dim`: what gemma4q
 * exports, byte for byte) and, for reading other tools' checkpoints, the other forms that denote
 * the same bytes: more dtypes (`also`), one alternative shape (`alt_ndim`, `alt`: a scalar as []
 * or [1], FP8 block scales as [R, C]), and `optional` (may be absent: activation scales, written
 * only when activations are quantized; compressed-tensors weight_shape).
 *
 * Order: the tensors of a format are listed in the order the exporter writes them; a role that
 * comes from calibration (g4q_layout_role_calibrated) is always last, so the weight quantizer
 * fills entries 0 .. n-1 positionally and the exporter the rest.
 */
#ifndef G4Q_QUANT_LAYOUT_H
#define G4Q_QUANT_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "base/ctx.h"
#include "io/dtype.h"
#include "io/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The stored form of one Linear. The values are shared with g4q_plan_format (export/plan.h) and
 * g4q_qlinear_format (model/qlinear.h), which are defined from them. */
typedef enum {
    G4Q_LAYOUT_BF16 = 0,   /* not quantized: <m>.weight BF16 [out, in] (no table entry) */
    G4Q_LAYOUT_NVFP4_MO,   /* ModelOpt NVFP4 / W4A16_NVFP4 (formats.md §2.1) */
    G4Q_LAYOUT_NVFP4_CT,   /* compressed-tensors nvfp4-pack-quantized (§6) */
    G4Q_LAYOUT_FP8_TENSOR, /* ModelOpt FP8 per tensor, W8A8 (§3) */
    G4Q_LAYOUT_FP8_BLOCK,  /* ModelOpt fp8_pb_wo, 128x128 blocks (§4) */
    G4Q_LAYOUT_INT4_GPTQ,  /* GPTQ v1, symmetric (§5.2) */
    G4Q_LAYOUT_INT4_CT,    /* compressed-tensors pack-quantized, symmetric (§5.3) */
    G4Q_LAYOUT_COUNT
} g4q_layout_format;

/* What a stored tensor holds. The values are shared with g4q_out_kind (export/plan.h). */
typedef enum {
    G4Q_LROLE_CODES = 1,   /* the weight's codes: E2M1 nibbles, E4M3 bytes or INT4 words */
    G4Q_LROLE_SCALES,      /* block or group scales */
    G4Q_LROLE_GLOBAL,      /* the per-tensor weight scale (weight_scale_2, weight_global_scale,
                              FP8 per-tensor weight_scale) */
    G4Q_LROLE_INPUT_SCALE, /* calibrated activation scale (W4A4, W8A8) */
    G4Q_LROLE_QZEROS,      /* GPTQ zero points (constant 0x77777777: symmetric) */
    G4Q_LROLE_G_IDX,       /* GPTQ group index of every input column */
    G4Q_LROLE_SHAPE,       /* compressed-tensors weight_shape: the values [out, in] */
    G4Q_LROLE_K_SCALE,     /* calibrated KV-cache scale of K (§7; g4q_layout_kv, not a format's) */
    G4Q_LROLE_V_SCALE,     /* same for V */
} g4q_layout_role;

/* 1 for the roles whose value comes from calibration (INPUT_SCALE, K_SCALE, V_SCALE), not from
 * the weight quantizer; 0 otherwise (0 included: g4q_out_kind's COPY). */
int g4q_layout_role_calibrated(int role);

/* One dimension of a shape rule. */
enum { G4Q_LDIM_ROWS = 0, G4Q_LDIM_COLS = 1, G4Q_LDIM_CONST = 2 };
#define G4Q_LDIM_GROUP (-1) /* as a divisor: the group size */

typedef struct g4q_layout_dim {
    int8_t of;   /* G4Q_LDIM_ROWS (out features), G4Q_LDIM_COLS (in features) or G4Q_LDIM_CONST */
    int8_t ceil; /* 1: the quotient is rounded up (partial blocks) */
    int32_t div; /* ROWS/COLS: the divisor (1: the dimension itself; G4Q_LDIM_GROUP: the group
                    size); CONST: the value */
} g4q_layout_dim;

#define G4Q_LAYOUT_MAX_DIMS 4
#define G4Q_LAYOUT_MAX_TENSORS 4

typedef struct g4q_layout_tensor {
    const char *suffix; /* the tensor is "<m>.<suffix>" */
    g4q_layout_role role;
    g4q_dtype dtype; /* written dtype */
    uint32_t also;   /* other dtypes accepted when reading, as bits 1u << dtype */
    int ndim;        /* written shape: ndim dims (0: a scalar []) */
    g4q_layout_dim dim[G4Q_LAYOUT_MAX_DIMS];
    int alt_ndim; /* -1: none; else another shape accepted when reading */
    g4q_layout_dim alt[G4Q_LAYOUT_MAX_DIMS];
    int optional; /* may be absent when reading */
} g4q_layout_tensor;

typedef struct g4q_layout {
    g4q_layout_format format;
    const char *name;    /* "nvfp4 (modelopt)", ...: g4q_layout_name */
    const char *section; /* where formats.md defines its bytes, e.g. "§2.1" */
    int group;           /* columns per group of the G4Q_LDIM_GROUP dims as the exporter writes them
                            (INT4: 128); 0 when the format has none (its blocks are fixed) */
    int rows_multiple, cols_multiple; /* out and in features must be multiples of these for the
                                         layout to be defined (the plan may ask for more) */
    int n;                            /* tensors in t */
    g4q_layout_tensor t[G4Q_LAYOUT_MAX_TENSORS];
} g4q_layout;

/* The table entry of a quantized format; NULL for G4Q_LAYOUT_BF16 and values out of range. */
const g4q_layout *g4q_layout_get(g4q_layout_format f);

/* "bf16", "nvfp4 (modelopt)", "nvfp4 (compressed-tensors)", "fp8 per-tensor", "fp8 128x128",
 * "int4 (gptq)", "int4 (compressed-tensors)"; "unknown" out of range. */
const char *g4q_layout_name(g4q_layout_format f);

/* Index in l->t of the tensor with this role, or -1. */
int g4q_layout_index(const g4q_layout *l, g4q_layout_role role);

/* The written shape of t for a weight [rows, cols] with `group` columns per group (used only by
 * G4Q_LDIM_GROUP dims): shape[0 .. ndim), returns ndim. */
int g4q_layout_shape(const g4q_layout_tensor *t, int64_t rows, int64_t cols, int64_t group,
                     int64_t shape[G4Q_LAYOUT_MAX_DIMS]);

/* Bytes of t as written: the product of g4q_layout_shape times the dtype size. */
uint64_t g4q_layout_nbytes(const g4q_layout_tensor *t, int64_t rows, int64_t cols, int64_t group);

/* The KV-cache scales (§7): F32 [] per layer, "<prefix>layers.N.self_attn.<proj>.<t.suffix>",
 * which 0 = K (k_proj.k_scale), 1 = V (v_proj.v_scale); NULL otherwise. They belong to the layer,
 * not to a Linear's format (a full-attention layer has no v_proj and still has a v_scale). */
typedef struct g4q_layout_kv {
    const char *proj; /* "k_proj" / "v_proj" */
    g4q_layout_tensor t;
} g4q_layout_kv;
const g4q_layout_kv *g4q_layout_kv_get(int which);

/* ---- reading a checkpoint through the table ---- */

/* A checkpoint's tensor by full name, or NULL; `src` is the caller's lookup state. */
typedef const g4q_tensor *(*g4q_layout_lookup)(const void *src, const char *name);

/* A module found in a checkpoint. */
typedef struct g4q_layout_match {
    g4q_layout_format format;                    /* G4Q_LAYOUT_BF16: no quantized form present */
    const g4q_layout *layout;                    /* its table entry; NULL for BF16 */
    const g4q_tensor *t[G4Q_LAYOUT_MAX_TENSORS]; /* tensor k of layout->t, NULL when optional
                                                    and absent */
    int64_t rows, cols;                          /* out and in features */
    int64_t group; /* columns per group of the G4Q_LDIM_GROUP dims, inferred from the
                      stored scales; 0 where the format has none */
} g4q_layout_match;

/*
 * Finds the stored form of `module` among a checkpoint's tensors and checks every tensor of it.
 *
 * Detection: by the codes tensor present ("<m>.qweight", "<m>.weight_packed", "<m>.weight") and
 * its dtype (formats.md §9.3). None present, or "<m>.weight" in a dtype no quantized format
 * writes (BF16, or something the weight binder then refuses): m->format = G4Q_LAYOUT_BF16, OK.
 * Where one codes tensor fits several formats (FP8 per tensor and 128x128 blocks share
 * "<m>.weight" F8_E4M3), the first whose other tensors all fit wins (a scalar weight_scale is
 * per tensor).
 *
 * Checks, in order: every non-optional tensor is present; rows and cols are multiples of the
 * format's rows_multiple / cols_multiple; the group size (formats with group dims) divides cols,
 * counted from the scales tensor; every present tensor has an accepted dtype and the written or
 * alternative shape. Values are not read (that is the caller's part: finite scales, zero points).
 *
 * rows, cols > 0: the module's shape (from the config), checked; <= 0: inferred from the codes
 * tensor (for tools comparing checkpoints without a config).
 *
 * Errors (naming `label` and the tensor; ctx may be NULL for a quiet check): G4Q_ERR_FORMAT for a
 * missing tensor or two codes tensors of one module ("two forms of one Linear"), G4Q_ERR_SHAPE
 * for a wrong dtype or shape, an undefined shape or a group that does not divide the inputs.
 */
g4q_status g4q_layout_find(g4q_ctx *ctx, const char *label, g4q_layout_lookup lookup,
                           const void *src, const char *module, int64_t rows, int64_t cols,
                           g4q_layout_match *m);

/* The tensor of m with this role, or NULL. */
const g4q_tensor *g4q_layout_match_role(const g4q_layout_match *m, g4q_layout_role role);

/* Checks one tensor against a table entry (accepted dtypes; written or alternative shape for
 * rows, cols, group); on mismatch G4Q_ERR_SHAPE "label: tensor 'name': DT [shape], expected ...".
 */
g4q_status g4q_layout_check(g4q_ctx *ctx, const char *label, const g4q_layout_tensor *lt,
                            const g4q_tensor *t, int64_t rows, int64_t cols, int64_t group);

/* When `name` is "<module>.<suffix>" for a suffix of some table tensor: writes module (at most
 * n bytes with the NUL) and returns 1; else 0. */
int g4q_layout_module_of(const char *name, char *module, size_t n);

#ifdef __cplusplus
}
#endif
#endif
