/* The real Gemma 3 tokenizer for the fuzzers that need one: $G4Q_SHARED_DIR/data/
 * gemma3-tokenizer.json.gz (default ../shared). Missing or unreadable aborts, naming `fuzzer`:
 * no tokenizer, no test, never a pass by skipping. */
#ifndef G4Q_TESTS_FUZZ_TOKENIZER_LOAD_H
#define G4Q_TESTS_FUZZ_TOKENIZER_LOAD_H

#include <stdio.h>
#include <stdlib.h>

#include "text/tokenizer.h"

static g4q_tok *fuzz_tokenizer_load(const char *fuzzer)
{
    const char *shared = getenv("G4Q_SHARED_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/data/gemma3-tokenizer.json.gz", shared ? shared : "../shared");
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_tok *tok = NULL;
    if (g4q_tok_load(&ctx, path, &tok) != G4Q_OK) {
        fprintf(stderr, "%s: %s (set G4Q_SHARED_DIR to the shared folder)\n", fuzzer,
                g4q_ctx_error(&ctx));
        abort();
    }
    return tok;
}

#endif
