/*
 * Tests of src/text/tokenizer: a hand-made tokenizer.json (expected ids derived by hand from the
 * BPE rules), refusal of unsupported pipelines, and the real Gemma 3 tokenizer from the shared data
 * folder (docs/gemma4.md §7.5 vectors, oracle vectors in tests/data/tok_gemma3_vectors.txt made by
 * HF tokenizers, round trips on random UTF-8, raw invalid bytes, a printed 1 MB throughput).
 * Tests that need the shared data fail when it is missing (set G4Q_SHARED_DIR).
 *
 * Helper modes used by scripts/oracle/tok_compare.py:
 *   test_tokenizer --encode TOKENIZER TEXT_FILE...   one line of comma-separated ids per file
 *   test_tokenizer --decode TOKENIZER IDS...         decoded text; with several IDS lists each
 *                                                    text is followed by a NUL byte; @FILE reads
 *                                                    a comma-separated list from FILE
 *   test_tokenizer --handmade-json OUT              writes the hand-made tokenizer.json
 */
#include <stdlib.h>
#include <string.h>

#include "base/sys.h"
#include "testutil.h"
#include "text/tokenizer.h"

/* ---------------------------------------------------------------- hand-made tokenizer */

/* Vocab: ids 0..18; added: <bos>=1 (special), <tag>=13 (special), "a b"=19 (normalized, not in the
 * model vocab), "<r>"=20 (lstrip+rstrip). Added tokens outside the model vocab get the ids after it
 * in file order (HF's rule; the file's "id" is only checked). Merges by rank:
 *   0 a+b=ab  1 ▁+a=▁a  2 b+c=bc  3 ab+c=abc  4 ▁+ab=▁ab  5 a+a=aa  6 " "+c=" c"  7 b+" "="b " */
static const char *HAND_VOCAB =
    "{\"<unk>\":0,\"<bos>\":1,\"<0xC3>\":2,\"<0xA9>\":3,\"\\u2581\":4,\"a\":5,\"b\":6,\"c\":7,"
    "\"ab\":8,\"\\u2581a\":9,\"abc\":10,\"\\u2581ab\":11,\"bc\":12,\"<tag>\":13,\"<pad>\":14,"
    "\"aa\":15,\" \":16,\"b \":17,\" c\":18}";
static const char *HAND_MERGES_PAIRS =
    "[[\"a\",\"b\"],[\"\\u2581\",\"a\"],[\"b\",\"c\"],[\"ab\",\"c\"],[\"\\u2581\",\"ab\"],"
    "[\"a\",\"a\"],[\" \",\"c\"],[\"b\",\" \"]]";
/* The string form cannot hold the two merges with a space; rank 6 and 7 are left out. */
static const char *HAND_MERGES_STRINGS =
    "[\"a b\",\"\\u2581 a\",\"b c\",\"ab c\",\"\\u2581 ab\",\"a a\"]";
#define HAND_ADDED_FMT                                                                             \
    "[{\"id\":1,\"content\":\"<bos>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"    \
    "\"normalized\":false,\"special\":true},"                                                      \
    "{\"id\":13,\"content\":\"<tag>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"    \
    "\"normalized\":false,\"special\":true},"                                                      \
    "{\"id\":19,\"content\":\"a b\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"      \
    "\"normalized\":true,\"special\":false},"                                                      \
    "{\"id\":%d,\"content\":\"<r>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":true,"        \
    "\"normalized\":false,\"special\":false}]"

/* HAND_ADDED_FMT with the file's id of "<r>" filled in (its own buffer per call site). */
static const char *hand_added(char *buf, size_t n, int r_id)
{
    snprintf(buf, n, HAND_ADDED_FMT, r_id);
    return buf;
}

static const char *GEMMA_NORM =
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}";
static const char *GEMMA_PRETOK = "{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},"
                                  "\"behavior\":\"MergedWithPrevious\",\"invert\":false}";
static const char *GEMMA_DEC =
    "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":"
    "\"\\u2581\"},\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]}";

/* Writes a tokenizer.json built from the parts into dir/name; returns the path in buf. */
static void write_json(char *buf, size_t n, const char *dir, const char *name, const char *norm,
                       const char *pretok, const char *dec, const char *merges, const char *added,
                       const char *model_extra)
{
    size_t cap = 16384;
    char *json = malloc(cap);
    int len =
        snprintf(json, cap,
                 "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
                 "\"added_tokens\":%s,\"normalizer\":%s,\"pre_tokenizer\":%s,"
                 "\"post_processor\":null,\"decoder\":%s,\"model\":{%s\"type\":\"BPE\","
                 "\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,"
                 "\"end_of_word_suffix\":null,\"fuse_unk\":true,\"byte_fallback\":true,"
                 "\"ignore_merges\":false,\"vocab\":%s,\"merges\":%s}}",
                 added, norm, pretok, dec, model_extra, HAND_VOCAB, merges);
    CHECK(len > 0 && (size_t)len < cap);
    snprintf(buf, n, "%s/%s", dir, name);
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    CHECK_STATUS(g4q_write_file(&ctx, buf, json, (size_t)len), G4Q_OK);
    free(json);
}

static void write_hand(char *buf, size_t n, const char *dir, int r_id)
{
    char added[2048];
    write_json(buf, n, dir, "hand.json", GEMMA_NORM, GEMMA_PRETOK, GEMMA_DEC, HAND_MERGES_PAIRS,
               hand_added(added, sizeof added, r_id), "");
}

/* Encodes text and compares with the expected ids (terminated by -1). */
static void expect_ids(g4q_ctx *ctx, const g4q_tok *tok, const char *text, const int32_t *want,
                       const char *label)
{
    g4q_tok_ids ids = {0};
    CHECK_STATUS(g4q_tok_encode(ctx, tok, text, strlen(text), &ids), G4Q_OK);
    size_t nw = 0;
    while (want[nw] >= 0)
        nw++;
    int same = ids.n == nw;
    for (size_t i = 0; same && i < nw; i++)
        same = ids.ids[i] == want[i];
    char got[512] = "", exp[512] = "";
    for (size_t i = 0; i < ids.n && strlen(got) < 480; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", i ? "," : "", ids.ids[i]);
    for (size_t i = 0; i < nw && strlen(exp) < 480; i++)
        snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%d", i ? "," : "", want[i]);
    CHECK_MSG(same, "%s: encode '%s': got [%s], want [%s]", label, text, got, exp);
    g4q_tok_ids_free(&ids);
}

static void expect_decode(g4q_ctx *ctx, const g4q_tok *tok, const int32_t *ids, size_t n,
                          unsigned flags, const char *want)
{
    char *s = NULL;
    size_t len = 0;
    CHECK_STATUS(g4q_tok_decode(ctx, tok, ids, n, flags, &s, &len), G4Q_OK);
    CHECK_MSG(s && len == strlen(want) && memcmp(s, want, len) == 0, "decode: got '%s', want '%s'",
              s ? s : "(null)", want);
    free(s);
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__, -1})

static void test_handmade(const char *dir)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    char path[4096];
    write_hand(path, sizeof path, dir, 20);
    g4q_tok *tok = NULL;
    CHECK_STATUS(g4q_tok_load(&ctx, path, &tok), G4Q_OK);
    if (!tok) {
        printf("  load failed: %s\n", g4q_ctx_error(&ctx));
        return;
    }
    CHECK_EQ_INT(g4q_tok_vocab_size(tok), 21);
    CHECK_EQ_INT(g4q_tok_model_vocab_size(tok), 19);
    /* a b -> ab (rank 0), then ab c -> abc (rank 3). */
    expect_ids(&ctx, tok, "abc", IDS(10), "hand");
    /* b c ▁ a: ▁a (rank 1) before bc (rank 2); no merge bc+▁a. */
    expect_ids(&ctx, tok, "bc a", IDS(12, 9), "hand");
    /* ▁ a b: ab (rank 0) beats ▁a (rank 1), then ▁+ab (rank 4). */
    expect_ids(&ctx, tok, " ab", IDS(11), "hand");
    /* Equal ranks merge leftmost first: aaa -> aa a; aaaa -> aa aa. */
    expect_ids(&ctx, tok, "aaa", IDS(15, 5), "hand");
    expect_ids(&ctx, tok, "aaaa", IDS(15, 15), "hand");
    /* é is not in the vocab: byte fallback C3 A9. */
    expect_ids(&ctx, tok, "\xc3\xa9", IDS(2, 3), "hand");
    /* ü = C3 BC: <0xBC> missing, so unk; fuse_unk joins consecutive unks. */
    expect_ids(&ctx, tok,
               "\xc3\xbc\xc3\xbc"
               "a",
               IDS(0, 5), "hand");
    /* A pending unk is emitted after later byte-fallback tokens (HF BPE::merge_word order). */
    expect_ids(&ctx, tok, "\xc3\xbc\xc3\xa9\xc3\xbc", IDS(2, 3, 0), "hand");
    /* Added tokens on the raw text, special or not; never a BOS of our own. */
    expect_ids(&ctx, tok, "<tag>abc<tag>", IDS(13, 10, 13), "hand");
    expect_ids(&ctx, tok, "<bos>a", IDS(1, 5), "hand");
    expect_ids(&ctx, tok, "<ta", IDS(0, 5), "hand"); /* '<' and 't' unknown: one fused unk */
    /* Normalized added token "a b" matches "a▁b" after the normalizer. */
    expect_ids(&ctx, tok, "ca b", IDS(7, 19), "hand");
    /* lstrip/rstrip: the spaces around <r> belong to it. */
    expect_ids(&ctx, tok, "a  <r>  b", IDS(5, 20, 6), "hand");
    expect_ids(&ctx, tok, "", (const int32_t[]){-1}, "hand");

    expect_decode(&ctx, tok, (const int32_t[]){9, 2, 3, 13}, 4, 0, " a\xc3\xa9<tag>");
    expect_decode(&ctx, tok, (const int32_t[]){9, 2, 3, 13}, 4, G4Q_TOK_DECODE_SKIP_SPECIAL,
                  " a\xc3\xa9");
    /* A byte run that is not valid UTF-8 gives one U+FFFD per byte. */
    expect_decode(&ctx, tok, (const int32_t[]){2, 5, 2, 2}, 4, 0,
                  "\xef\xbf\xbd"
                  "a\xef\xbf\xbd\xef\xbf\xbd");
    char *s = NULL;
    CHECK_STATUS(g4q_tok_decode(&ctx, tok, (const int32_t[]){5, 99}, 2, 0, &s, NULL),
                 G4Q_ERR_INVALID);
    CHECK_STATUS(g4q_tok_decode(&ctx, tok, (const int32_t[]){5, 21}, 2, 0, &s, NULL),
                 G4Q_ERR_INVALID);

    CHECK_EQ_INT(g4q_tok_token_to_id(tok, "abc"), 10);
    CHECK_EQ_INT(g4q_tok_token_to_id(tok, "a b"), 19);
    CHECK_EQ_INT(g4q_tok_token_to_id(tok, "zz"), -1);
    CHECK(strcmp(g4q_tok_id_to_token(tok, 20), "<r>") == 0);
    CHECK(strcmp(g4q_tok_id_to_token(tok, 4), "\xe2\x96\x81") == 0);
    CHECK(g4q_tok_id_to_token(tok, 21) == NULL);
    CHECK(g4q_tok_id_to_token(tok, -1) == NULL);
    CHECK_EQ_INT(g4q_tok_special_id(tok, "<tag>"), 13);
    CHECK_EQ_INT(g4q_tok_special_id(tok, "<r>"), -1);
    CHECK(g4q_tok_is_special(tok, 1) && !g4q_tok_is_special(tok, 5));
    g4q_tok_free(tok);
}

/* Variants: merges as "a b" strings; no normalizer (then Split(" ") really splits). */
static void test_handmade_variants(const char *dir)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    char path[4096], added[2048];
    g4q_tok *tok = NULL;
    hand_added(added, sizeof added, 20);
    write_json(path, sizeof path, dir, "strings.json", GEMMA_NORM, GEMMA_PRETOK, GEMMA_DEC,
               HAND_MERGES_STRINGS, added, "");
    CHECK_STATUS(g4q_tok_load(&ctx, path, &tok), G4Q_OK);
    if (tok) {
        expect_ids(&ctx, tok, "abc", IDS(10), "strings");
        expect_ids(&ctx, tok, " ab", IDS(11), "strings");
        expect_ids(&ctx, tok, "bc a", IDS(12, 9), "strings");
        g4q_tok_free(tok);
    }
    /* No normalizer, Split(" ", MergedWithPrevious): "b c" -> words "b ", "c" -> b+" " (rank 7).
     * Without the split " "+c (rank 6) would win: [6, 18]. */
    write_json(path, sizeof path, dir, "split.json", "null", GEMMA_PRETOK, "null",
               HAND_MERGES_PAIRS, "[]", "");
    CHECK_STATUS(g4q_tok_load(&ctx, path, &tok), G4Q_OK);
    if (tok) {
        expect_ids(&ctx, tok, "b c", IDS(17, 7), "split");
        /* Consecutive matches: the second space stands alone: "b ", " ", "c". */
        expect_ids(&ctx, tok, "b  c", IDS(17, 16, 7), "split");
        /* Without a decoder, pieces are joined with single spaces. */
        expect_decode(&ctx, tok, (const int32_t[]){5, 6}, 2, 0, "a b");
        g4q_tok_free(tok);
    }
    write_json(path, sizeof path, dir, "nosplit.json", "null", "null", GEMMA_DEC, HAND_MERGES_PAIRS,
               "[]", "");
    CHECK_STATUS(g4q_tok_load(&ctx, path, &tok), G4Q_OK);
    if (tok) {
        expect_ids(&ctx, tok, "b c", IDS(6, 18), "nosplit");
        g4q_tok_free(tok);
    }
    /* A Sequence normalizer holding the Replace. */
    char seq[512];
    snprintf(seq, sizeof seq, "{\"type\":\"Sequence\",\"normalizers\":[%s]}", GEMMA_NORM);
    write_json(path, sizeof path, dir, "seq.json", seq, GEMMA_PRETOK, GEMMA_DEC, HAND_MERGES_PAIRS,
               added, "");
    CHECK_STATUS(g4q_tok_load(&ctx, path, &tok), G4Q_OK);
    if (tok) {
        expect_ids(&ctx, tok, "bc a", IDS(12, 9), "seq");
        g4q_tok_free(tok);
    }
    /* A file whose id for "<r>" disagrees with HF's assignment: HF's id (20) wins. */
    write_hand(path, sizeof path, dir, 30);
    ctx.log_level = G4Q_LOG_ERROR; /* the warning is expected */
    CHECK_STATUS(g4q_tok_load(&ctx, path, &tok), G4Q_OK);
    if (tok) {
        expect_ids(&ctx, tok, "a <r>", IDS(5, 20), "id30");
        CHECK_EQ_INT(g4q_tok_vocab_size(tok), 21);
        g4q_tok_free(tok);
    }
}

static void expect_refused(const char *dir, const char *norm, const char *pretok, const char *dec,
                           const char *added, const char *model_extra, const char *what)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    char path[4096];
    write_json(path, sizeof path, dir, "bad.json", norm, pretok, dec, HAND_MERGES_PAIRS, added,
               model_extra);
    g4q_tok *tok = NULL;
    g4q_status st = g4q_tok_load(&ctx, path, &tok);
    CHECK_MSG(st == G4Q_ERR_UNSUPPORTED && tok == NULL && strstr(g4q_ctx_error(&ctx), what),
              "refuse %s: got %s '%s'", what, g4q_status_name(st), g4q_ctx_error(&ctx));
    g4q_tok_free(tok);
}

static void test_refusals(const char *dir)
{
    expect_refused(dir, "{\"type\":\"NFKC\"}", "null", "null", "[]", "", "NFKC");
    expect_refused(dir, "null", "{\"type\":\"ByteLevel\"}", "null", "[]", "", "ByteLevel");
    expect_refused(dir, "null",
                   "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s\"},"
                   "\"behavior\":\"MergedWithPrevious\",\"invert\":false}",
                   "null", "[]", "", "Split");
    expect_refused(dir, "null", "null", "{\"type\":\"Metaspace\"}", "[]", "", "Metaspace");
    expect_refused(dir, "null", "null", "null",
                   "[{\"id\":13,\"content\":\"<tag>\",\"single_word\":true,\"lstrip\":false,"
                   "\"rstrip\":false,\"normalized\":false,\"special\":true}]",
                   "", "single_word");
    expect_refused(dir, "null", "null", "null", "[]", "\"continuing_subword_prefix\":\"##\",",
                   "continuing_subword_prefix");
    /* Malformed files are FORMAT errors, never crashes. */
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_tok *tok = NULL;
    const char *bad[] = {
        "{",
        "[]",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[\"a\",\"b\"]]}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0}}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a\"]}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        g4q_status st = g4q_tok_load_json(&ctx, bad[i], strlen(bad[i]), "bad.json", &tok);
        CHECK_MSG(st == G4Q_ERR_FORMAT && !tok, "bad json %zu: %s '%s'", i, g4q_status_name(st),
                  g4q_ctx_error(&ctx));
    }
    CHECK_STATUS(g4q_tok_load(&ctx, "/nonexistent/tokenizer.json", &tok), G4Q_ERR_NOT_FOUND);
    g4q_tok_free(NULL);
}

/* ---------------------------------------------------------------- Gemma 3 (shared data) */

static int gemma_path(char *buf, size_t n)
{
    const char *shared = getenv("G4Q_SHARED_DIR");
    if (!shared || !*shared) shared = G4Q_SHARED_DIR;
    snprintf(buf, n, "%s/data/gemma3-tokenizer.json.gz", shared);
    return g4q_path_exists(buf);
}

/* Parses one line of tok_gemma3_vectors.txt: escaped text, TAB, ids. Escapes: \n \t \r \\ \xHH. */
static int parse_vector(char *line, char *text, size_t *text_len, int32_t *ids, size_t *n_ids,
                        size_t cap)
{
    char *tab = strchr(line, '\t');
    if (!tab) return 0;
    *tab = 0;
    size_t k = 0;
    for (char *p = line; *p; p++) {
        if (*p != '\\') {
            text[k++] = *p;
            continue;
        }
        p++;
        if (*p == 'n')
            text[k++] = '\n';
        else if (*p == 't')
            text[k++] = '\t';
        else if (*p == 'r')
            text[k++] = '\r';
        else if (*p == '\\')
            text[k++] = '\\';
        else if (*p == 'x' && p[1] && p[2]) {
            char hex[3] = {p[1], p[2], 0};
            text[k++] = (char)strtol(hex, NULL, 16);
            p += 2;
        } else {
            return 0;
        }
    }
    *text_len = k;
    *n_ids = 0;
    for (char *p = tab + 1; *p && *p != '\n' && *n_ids < cap;) {
        ids[(*n_ids)++] = (int32_t)strtol(p, &p, 10);
        if (*p == ',') p++;
    }
    return 1;
}

static void test_gemma_vectors(g4q_ctx *ctx, const g4q_tok *tok)
{
    /* docs/gemma4.md §7.5 [V]. */
    expect_ids(ctx, tok, "Hello world", IDS(9259, 1902), "gemma3");
    expect_ids(ctx, tok, "Hello  world ", IDS(9259, 138, 12392, 236743), "gemma3");
    expect_ids(ctx, tok, "a\n\nb", IDS(236746, 108, 236763), "gemma3");
    expect_ids(ctx, tok, "\xf0\x9f\x98\x80 \xf0\x9d\x94\x98 \x07",
               IDS(242398, 236743, 478, 395, 386, 390, 236743, 245), "gemma3");
    expect_ids(ctx, tok, "<start_of_turn>user\nHi<end_of_turn>\n",
               IDS(105, 2364, 107, 10979, 106, 107), "gemma3");
    CHECK_EQ_INT(g4q_tok_vocab_size(tok), 262145);
    CHECK_EQ_INT(g4q_tok_model_vocab_size(tok), 262144);
    CHECK_EQ_INT(g4q_tok_special_id(tok, "<eos>"), 1);
    CHECK_EQ_INT(g4q_tok_special_id(tok, "<bos>"), 2);
    CHECK_EQ_INT(g4q_tok_special_id(tok, "<start_of_turn>"), 105);
    CHECK_EQ_INT(g4q_tok_token_to_id(tok, "<0x00>"), 238);
    CHECK_EQ_INT(g4q_tok_token_to_id(tok, "\xe2\x96\x81"), 236743);
    CHECK(strcmp(g4q_tok_id_to_token(tok, 262144), "<image_soft_token>") == 0);

    char path[4096];
    const char *src = getenv("G4Q_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/tests/data/tok_gemma3_vectors.txt",
             src && *src ? src : G4Q_SOURCE_DIR);
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    if (!f) return;
    static char line[65536], text[65536];
    static int32_t want[8192];
    int count = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        size_t tl = 0, nw = 0;
        if (!CHECK_MSG(parse_vector(line, text, &tl, want, &nw, 8191), "bad line in %s", path))
            continue;
        text[tl] = 0;
        want[nw] = -1;
        expect_ids(ctx, tok, text, want, "vectors");
        count++;
    }
    fclose(f);
    printf("  %d oracle vectors checked\n", count);
    CHECK(count >= 20);
}

/* Appends one random code point (UTF-8) drawn from a mix of scripts, spaces and newlines. */
static size_t rand_char(uint64_t *rng, char *o)
{
    static const uint32_t ranges[][2] = {
        {0x20, 0x7e},     {0x20, 0x20},       {0x0a, 0x0a},       {0x09, 0x09},
        {0xa0, 0x24f},    {0x370, 0x3ff},     {0x400, 0x4ff},     {0x590, 0x6ff},
        {0x900, 0x97f},   {0x3040, 0x30ff},   {0x4e00, 0x9fff},   {0xac00, 0xd7a3},
        {0x2000, 0x206f}, {0x1f300, 0x1faff}, {0x1d400, 0x1d7ff}, {0xe000, 0xe0ff},
        {0x200d, 0x200d}, {0xfe0f, 0xfe0f},   {0x10000, 0x10ffff}};
    size_t nr = sizeof ranges / sizeof ranges[0];
    size_t r = (size_t)(g4q_test_rand(rng) % nr);
    uint32_t cp = ranges[r][0] + (uint32_t)(g4q_test_rand(rng) % (ranges[r][1] - ranges[r][0] + 1));
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 'x';
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static void test_gemma_roundtrip(g4q_ctx *ctx, const g4q_tok *tok)
{
    uint64_t rng = g4q_test_seed();
    static const char *inserts[] = {"<start_of_turn>", "<bos>", "\n\n",  "    ", "\t\t",
                                    "<unused7>",       "<eos",  "Hello", " the", "<end_of_turn>"};
    int bad = 0;
    static const size_t sizes[] = {1, 2, 3, 7, 15, 17, 64, 127, 129, 1000};
    for (int iter = 0; iter < 300; iter++) {
        char text[8192];
        size_t n = 0, want = sizes[iter % 10];
        for (size_t k = 0; k < want && n + 32 < sizeof text; k++) {
            if (g4q_test_rand(&rng) % 8 == 0) {
                const char *s = inserts[g4q_test_rand(&rng) % 10];
                memcpy(text + n, s, strlen(s));
                n += strlen(s);
            } else {
                n += rand_char(&rng, text + n);
            }
        }
        g4q_tok_ids ids = {0};
        char *back = NULL;
        size_t back_len = 0;
        CHECK_STATUS(g4q_tok_encode(ctx, tok, text, n, &ids), G4Q_OK);
        CHECK_STATUS(g4q_tok_decode(ctx, tok, ids.ids, ids.n, 0, &back, &back_len), G4Q_OK);
        if (!back || back_len != n || memcmp(back, text, n) != 0) {
            size_t at = 0;
            while (back && at < n && at < back_len && back[at] == text[at])
                at++;
            if (bad++ < 3)
                CHECK_MSG(0,
                          "round trip %d (%zu bytes, got %zu) differs at byte %zu: %02x %02x %02x "
                          "%02x vs %02x",
                          iter, n, back_len, at, (unsigned char)text[at],
                          (unsigned char)text[at + 1], (unsigned char)text[at + 2],
                          (unsigned char)text[at + 3],
                          back && at < back_len ? (unsigned char)back[at] : 0);
        }
        free(back);
        g4q_tok_ids_free(&ids);
    }
    CHECK_EQ_INT(bad, 0);
}

/* Raw invalid UTF-8: each stray byte becomes its <0xHH> token (id 238 + byte); decode turns a
 * run that is not valid UTF-8 into U+FFFD per byte. */
static void test_gemma_invalid(g4q_ctx *ctx, const g4q_tok *tok)
{
    const char text[] = "a\xff"
                        "b\xe2\x82"
                        "c\xc0\xaf";
    g4q_tok_ids ids = {0};
    CHECK_STATUS(g4q_tok_encode(ctx, tok, text, sizeof text - 1, &ids), G4Q_OK);
    int32_t a = g4q_tok_token_to_id(tok, "a"), b = g4q_tok_token_to_id(tok, "b"),
            c = g4q_tok_token_to_id(tok, "c");
    const int32_t want[] = {a, 238 + 0xff, b, 238 + 0xe2, 238 + 0x82, c, 238 + 0xc0, 238 + 0xaf};
    int same = ids.n == 8;
    for (size_t i = 0; same && i < 8; i++)
        same = ids.ids[i] == want[i];
    CHECK_MSG(same, "invalid UTF-8: %zu ids", ids.n);
    char *s = NULL;
    size_t len = 0;
    CHECK_STATUS(g4q_tok_decode(ctx, tok, ids.ids, ids.n, 0, &s, &len), G4Q_OK);
    const char *exp = "a\xef\xbf\xbd"
                      "b\xef\xbf\xbd\xef\xbf\xbd"
                      "c\xef\xbf\xbd\xef\xbf\xbd";
    CHECK_MSG(s && strcmp(s, exp) == 0, "decode of invalid bytes: '%s'", s ? s : "");
    free(s);
    g4q_tok_ids_free(&ids);

    /* Random bytes (mostly invalid UTF-8): encode succeeds, every id exists, and the ids decode. */
    uint64_t rng = g4q_test_seed() ^ 0x5eed;
    for (int iter = 0; iter < 200; iter++) {
        unsigned char buf[300];
        size_t n = 1 + (size_t)(g4q_test_rand(&rng) % sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)g4q_test_rand(&rng);
        g4q_tok_ids r = {0};
        CHECK_STATUS(g4q_tok_encode(ctx, tok, (const char *)buf, n, &r), G4Q_OK);
        int in_range = r.n > 0;
        for (size_t i = 0; i < r.n; i++)
            in_range &= g4q_tok_id_to_token(tok, r.ids[i]) != NULL;
        CHECK_MSG(in_range, "random bytes %d: %zu ids, some without a token", iter, r.n);
        char *d = NULL;
        CHECK_STATUS(g4q_tok_decode(ctx, tok, r.ids, r.n, 0, &d, NULL), G4Q_OK);
        free(d);
        g4q_tok_ids_free(&r);
    }
}

/* About 1 MB of varied text (prose, code, CJK, emoji, newlines); the time is printed only. */
static void test_gemma_throughput(g4q_ctx *ctx, const g4q_tok *tok)
{
    static const char *parts[] = {
        "The quick brown fox jumps over the lazy dog. ",
        "Quantization reduces memory traffic; ",
        "\n\n",
        "int main(void)\n{\n\tfor (int i = 0; i < n; i++)\n\t\tsum += x[i];\n}\n",
        "    def forward(self, x):\n        return self.proj(x)\n",
        "\xe6\x9d\xb1\xe4\xba\xac\xe3\x81\xaf\xe6\x97\xa5\xe6\x9c\xac\xe3\x81\xae\xe9\xa6\x96"
        "\xe9\x83\xbd\xe3\x81\xa7\xe3\x81\x99\xe3\x80\x82",
        "\xf0\x9f\x98\x80\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 ",
        "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xbc\xd0\xb8\xd1\x80! ",
        "<start_of_turn>user\n",
        "1234567890 + 0.5e-3 = ?  ",
        "https://example.org/a?b=c&d=e "};
    size_t cap = 1u << 20, n = 0;
    char *text = malloc(cap + 256);
    uint64_t rng = 12345;
    while (n < cap) {
        const char *p = parts[g4q_test_rand(&rng) % (sizeof parts / sizeof parts[0])];
        size_t l = strlen(p);
        memcpy(text + n, p, l);
        n += l;
    }
    g4q_tok_ids ids = {0};
    double t0 = g4q_now_seconds();
    CHECK_STATUS(g4q_tok_encode(ctx, tok, text, n, &ids), G4Q_OK);
    double dt = g4q_now_seconds() - t0;
    printf("  throughput: %zu bytes -> %zu tokens in %.3f s (%.2f MB/s)\n", n, ids.n, dt,
           (double)n / 1e6 / (dt > 0 ? dt : 1e-9));
    char *back = NULL;
    size_t back_len = 0;
    t0 = g4q_now_seconds();
    CHECK_STATUS(g4q_tok_decode(ctx, tok, ids.ids, ids.n, 0, &back, &back_len), G4Q_OK);
    printf("  decode: %.3f s\n", g4q_now_seconds() - t0);
    CHECK(back && back_len == n && memcmp(back, text, n) == 0);
    free(back);
    free(text);
    g4q_tok_ids_free(&ids);
}

static void test_gemma(void)
{
    char path[4096];
    if (!gemma_path(path, sizeof path)) {
        CHECK_MSG(0, "gemma3 tokenizer %s not found: set G4Q_SHARED_DIR to the shared data folder "
                     "(cmake -DG4Q_SHARED_DIR=DIR; default <source>/../shared)", path);
        return;
    }
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_tok *tok = NULL;
    double t0 = g4q_now_seconds();
    CHECK_STATUS(g4q_tok_load(&ctx, path, &tok), G4Q_OK);
    printf("  gemma3 tokenizer loaded in %.3f s (peak RSS %.0f MB)\n", g4q_now_seconds() - t0,
           (double)g4q_peak_rss_bytes() / 1e6);
    if (!tok) {
        printf("  %s\n", g4q_ctx_error(&ctx));
        return;
    }
    test_gemma_vectors(&ctx, tok);
    test_gemma_roundtrip(&ctx, tok);
    test_gemma_invalid(&ctx, tok);
    test_gemma_throughput(&ctx, tok);
    g4q_tok_free(tok);
}

/* ---------------------------------------------------------------- helper modes */

static int mode_encode(int argc, char **argv)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_tok *tok = NULL;
    double t0 = g4q_now_seconds();
    if (g4q_tok_load(&ctx, argv[2], &tok) != G4Q_OK) {
        fprintf(stderr, "error: %s\n", g4q_ctx_error(&ctx));
        return 1;
    }
    fprintf(stderr, "load: %.3f s\n", g4q_now_seconds() - t0);
    double total = 0;
    size_t bytes = 0;
    for (int a = 3; a < argc; a++) {
        char *text = NULL;
        size_t len = 0;
        g4q_tok_ids ids = {0};
        if (g4q_read_file(&ctx, argv[a], (size_t)1 << 30, &text, &len) != G4Q_OK) {
            fprintf(stderr, "error: %s\n", g4q_ctx_error(&ctx));
            g4q_tok_free(tok);
            return 1;
        }
        t0 = g4q_now_seconds();
        g4q_status st = g4q_tok_encode(&ctx, tok, text, len, &ids);
        total += g4q_now_seconds() - t0;
        bytes += len;
        for (size_t i = 0; st == G4Q_OK && i < ids.n; i++)
            printf("%s%d", i ? "," : "", ids.ids[i]);
        printf("\n");
        free(text);
        g4q_tok_ids_free(&ids);
    }
    fprintf(stderr, "encode: %zu bytes in %.3f s\n", bytes, total);
    g4q_tok_free(tok);
    return 0;
}

static int mode_decode(int argc, char **argv)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    g4q_tok *tok = NULL;
    if (g4q_tok_load(&ctx, argv[2], &tok) != G4Q_OK) {
        fprintf(stderr, "error: %s\n", g4q_ctx_error(&ctx));
        return 1;
    }
    int rc = 0;
    for (int a = 3; a < argc && rc == 0; a++) {
        size_t n = 0, cap = 16;
        int32_t *ids = malloc(cap * sizeof *ids);
        char *list = argv[a], *file = NULL;
        if (list[0] == '@') { /* ids read from a file */
            if (g4q_read_file(&ctx, list + 1, (size_t)1 << 30, &file, NULL) != G4Q_OK) {
                fprintf(stderr, "error: %s\n", g4q_ctx_error(&ctx));
                free(ids);
                rc = 1;
                break;
            }
            list = file;
        }
        for (char *p = list; *p;) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p) break;
            if (n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
            ids[n++] = (int32_t)v;
            p = *e == ',' ? e + 1 : e;
        }
        char *s = NULL;
        size_t len = 0;
        if (g4q_tok_decode(&ctx, tok, ids, n, 0, &s, &len) != G4Q_OK) {
            fprintf(stderr, "error: %s\n", g4q_ctx_error(&ctx));
            rc = 1;
        } else {
            fwrite(s, 1, len, stdout);
            if (argc > 4) fputc(0, stdout);
        }
        free(s);
        free(ids);
        free(file);
    }
    g4q_tok_free(tok);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "--encode") == 0) return mode_encode(argc, argv);
    if (argc >= 4 && strcmp(argv[1], "--decode") == 0) return mode_decode(argc, argv);
    char dir[4096];
    g4q_test_tmpdir(dir, sizeof dir, "tokenizer");
    if (argc == 3 && strcmp(argv[1], "--handmade-json") == 0) {
        char path[4096];
        write_hand(path, sizeof path, dir, 20);
        g4q_ctx ctx;
        g4q_ctx_init(&ctx);
        return g4q_copy_file(&ctx, path, argv[2]) == G4Q_OK ? 0 : 1;
    }
    test_handmade(dir);
    test_handmade_variants(dir);
    test_refusals(dir);
    test_gemma();
    return g4q_test_finish();
}
