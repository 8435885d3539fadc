/*
 * Glob patterns on module names ("model.language_model.layers.5.mlp.gate_proj").
 *
 * Syntax (the whole name must match; there is no implicit prefix or suffix match):
 *   *       any run of characters, possibly empty, INCLUDING '.': "layers.*.mlp.*_proj" matches
 *           "layers.5.mlp.gate_proj", and "layers.*_proj" matches every projection of every layer.
 *   ?       exactly one character (also '.').
 *   [abc]   one character of the set; ranges [0-9]; [!abc] or [^abc] negate. A ']' right after
 *           '[' (or after the negation) is a member. Inside a class every other character is
 *           literal, '*', '?', '{', ',' and '}' included.
 *   {a,b}   one of the comma-separated alternatives, which may contain *, ? and classes but no
 *           further braces: "self_attn.{q,k,v,o}_proj". Outside braces ',' is literal.
 *   \c      the character c literally (e.g. "\*", "\{").
 * Everything else is literal, so "layers.1.*" does not match "layers.10.mlp" but "layers.1*" does:
 * end a layer index with the following '.' to select exactly one layer.
 */
#ifndef G4Q_RECIPE_GLOB_H
#define G4Q_RECIPE_GLOB_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Checks the syntax of a pattern. Returns NULL when it is valid; otherwise a short static reason
 * ("unclosed '['") and, if err_offset is not NULL, the byte offset in the pattern where the problem
 * starts. An empty pattern is invalid. */
const char *g4q_glob_check(const char *pattern, size_t *err_offset);

/* 1 if name matches the whole pattern, 0 otherwise. The pattern must have passed g4q_glob_check;
 * malformed patterns never crash but their result is unspecified. */
int g4q_glob_match(const char *pattern, const char *name);

#ifdef __cplusplus
}
#endif
#endif
