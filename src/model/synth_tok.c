#include "model/synth_tok.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/strbuf.h"
#include "base/sys.h"
#include "io/json_write.h"
#include "model/synth.h"

/* ---- vocabulary: strings by id, with a hash set for lookups ---- */

typedef struct vocab {
    int size;        /* V */
    char *pool;      /* NUL-terminated strings */
    size_t pool_len, pool_cap;
    size_t *off;     /* [V] offset of each id's string in pool; SIZE_MAX while unset */
    int *slots;      /* hash set of ids + 1; 0 = empty */
    size_t n_slots;  /* power of two >= 2 V */
    int *merge_a, *merge_b; /* merges (token ids) in rank order */
    int n_merges, cap_merges;
    int next_id;     /* next free id of the BPE region */
    int bpe_end;     /* first id after the BPE region */
} vocab;

static uint64_t str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static const char *vstr(const vocab *v, int id)
{
    return v->pool + v->off[id];
}

/* Id of string s, or -1. */
static int vfind(const vocab *v, const char *s)
{
    size_t mask = v->n_slots - 1;
    for (size_t i = str_hash(s) & mask;; i = (i + 1) & mask) {
        int id = v->slots[i] - 1;
        if (id < 0)
            return -1;
        if (strcmp(vstr(v, id), s) == 0)
            return id;
    }
}

/* Puts s at id (unused, and s not yet present). Returns 0 on success, -1 when out of memory. */
static int vset(vocab *v, int id, const char *s)
{
    size_t n = strlen(s) + 1;
    if (v->pool_len + n > v->pool_cap) {
        size_t cap = v->pool_cap * 2 + n;
        char *p = realloc(v->pool, cap);
        if (!p)
            return -1;
        v->pool = p;
        v->pool_cap = cap;
    }
    memcpy(v->pool + v->pool_len, s, n);
    v->off[id] = v->pool_len;
    v->pool_len += n;
    size_t mask = v->n_slots - 1, i = str_hash(s) & mask;
    while (v->slots[i])
        i = (i + 1) & mask;
    v->slots[i] = id + 1;
    return 0;
}

static int vadd_merge(vocab *v, int a, int b)
{
    if (v->n_merges == v->cap_merges) {
        int cap = v->cap_merges * 2 + 1024;
        int *na = realloc(v->merge_a, (size_t)cap * sizeof(int));
        if (!na)
            return -1;
        v->merge_a = na;
        int *nb = realloc(v->merge_b, (size_t)cap * sizeof(int));
        if (!nb)
            return -1;
        v->merge_b = nb;
        v->cap_merges = cap;
    }
    v->merge_a[v->n_merges] = a;
    v->merge_b[v->n_merges] = b;
    v->n_merges++;
    return 0;
}

/* Adds the merge a + b, creating the token a+b in the BPE region when new. Returns the merged
 * id, -1 when out of memory, -2 when the region is full. */
static int vmerge(vocab *v, int a, int b)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%s%s", vstr(v, a), vstr(v, b));
    if (n < 0 || (size_t)n >= sizeof buf)
        return -2;
    int id = vfind(v, buf);
    if (id < 0) {
        if (v->next_id >= v->bpe_end)
            return -2;
        id = v->next_id++;
        if (vset(v, id, buf) != 0)
            return -1;
    }
    return vadd_merge(v, a, b) == 0 ? id : -1;
}

static void vfree(vocab *v)
{
    free(v->pool);
    free(v->off);
    free(v->slots);
    free(v->merge_a);
    free(v->merge_b);
}

/* ---- fixed tokens ---- */

typedef struct fixed_token {
    int id;
    const char *text;
} fixed_token;

static const fixed_token k_control[] = {
    {0, "<pad>"},           {1, "<eos>"},           {2, "<bos>"},          {3, "<unk>"},
    {4, "<mask>"},          {46, "<|tool>"},        {47, "<tool|>"},       {48, "<|tool_call>"},
    {49, "<tool_call|>"},   {50, "<|tool_response>"}, {51, "<tool_response|>"},
    {52, "<|\"|>"},         {98, "<|think|>"},      {100, "<|channel>"},   {101, "<channel|>"},
    {105, "<|turn>"},       {106, "<turn|>"},
};

/* Characters of the base alphabet beyond "▁" and printable ASCII. */
static const char *const k_extra_chars[] = {
    "é", "è", "à", "ü", "ö", "ä", "ñ", "ç", "—", "–", "’", "‘", "“", "”", "…", "•", "°", "€",
    "£", "©",
};

#define LOW_RESERVED 256   /* ids 0..255: control tokens, newline runs, <unusedN> */
#define BYTE_FIRST 256     /* <0x00> .. <0xFF> */
#define BASE_FIRST 512
#define BIG_VOCAB 262144
#define BIG_TOP_FIRST 255968 /* 255968..262143: added tokens in the 262144 vocab */

/* First id of the top added-token range. */
static int top_first(int vocab_size)
{
    return vocab_size >= BIG_VOCAB ? BIG_TOP_FIRST : vocab_size - 7;
}

static int is_added(int vocab_size, int id)
{
    return id < LOW_RESERVED || id >= top_first(vocab_size);
}

static int is_special(const char *s)
{
    return s[0] == '<' && strncmp(s, "<unused", 7) != 0;
}

static int put_fixed(vocab *v)
{
    g4q_synth_mm_ids mm;
    g4q_synth_mm_ids_of(v->size, &mm);
    const fixed_token top[] = {
        {mm.boi, "<|image>"}, {mm.boa, "<|audio>"}, {mm.image, "<|image|>"},
        {mm.audio, "<|audio|>"}, {mm.eoi, "<image|>"}, {mm.eoa, "<audio|>"},
        {mm.video, "<|video|>"},
    };
    for (size_t i = 0; i < sizeof k_control / sizeof k_control[0]; i++)
        if (vset(v, k_control[i].id, k_control[i].text))
            return -1;
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (vset(v, top[i].id, top[i].text))
            return -1;
    char buf[64];
    for (int k = 1; k <= 31; k++) { /* "\n" x k at 106 + k: "\n" is 107, "\n\n" 108 */
        memset(buf, '\n', (size_t)k);
        buf[k] = '\0';
        if (vset(v, 106 + k, buf))
            return -1;
    }
    for (int b = 0; b < 256; b++) {
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        if (vset(v, BYTE_FIRST + b, buf))
            return -1;
    }
    int unused = 0;
    for (int id = 0; id < v->size; id++) {
        if (!is_added(v->size, id) || v->off[id] != SIZE_MAX)
            continue;
        snprintf(buf, sizeof buf, "<unused%d>", unused++);
        if (vset(v, id, buf))
            return -1;
    }
    /* The base alphabet. */
    int id = BASE_FIRST;
    if (vset(v, id++, "\xe2\x96\x81"))
        return -1;
    for (int c = 33; c < 127; c++) {
        buf[0] = (char)c;
        buf[1] = '\0';
        if (vset(v, id++, buf))
            return -1;
    }
    for (size_t i = 0; i < sizeof k_extra_chars / sizeof k_extra_chars[0]; i++)
        if (vset(v, id++, k_extra_chars[i]))
            return -1;
    v->next_id = id;
    return 0;
}

/* ---- merges learned from a weighted word list ---- */

/* Common English words, most frequent first; the weight of rank r is about 6000 / (r + 5). */
static const char *const k_words[] = {
    "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "was", "with", "be",
    "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have",
    "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has",
    "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "she", "other",
    "its", "may", "these", "what", "them", "than", "some", "him", "time", "into", "only", "do",
    "two", "new", "then", "first", "any", "could", "about", "over", "after", "people", "also",
    "model", "such", "like", "our", "most", "made", "many", "way", "each", "years", "should",
    "where", "because", "work", "through", "between", "world", "before", "same", "used",
    "number", "great", "state", "system", "year", "under", "water", "while", "long", "life",
    "three", "during", "good", "small", "large", "weight", "value", "point", "data", "text",
    "language", "quantization", "layer", "token", "attention", "memory", "example", "number",
    "using", "without", "however", "another", "important", "different", "following", "second",
    "because", "general", "group", "problem", "company", "government", "public", "during",
    "school", "family", "question", "information", "development", "program", "result", "change",
    "house", "country", "history", "children", "interest", "service", "power", "order", "place",
    "hello", "world", "morning", "computer", "science", "research", "market", "energy", "light",
    "river", "mountain", "ocean", "story", "music", "water", "green", "black", "white", "city",
    "night", "reason", "always", "never", "often", "under", "again", "still", "something",
    "nothing", "everything", "answer", "write", "read", "think", "know", "make", "take", "give",
    "find", "tell", "ask", "seem", "feel", "leave", "call", "keep", "begin", "help", "show",
    "hear", "play", "run", "move", "live", "believe", "bring", "happen", "provide", "include",
    "continue", "learn", "understand", "follow", "create", "speak", "allow", "offer", "remember",
    "consider", "appear", "build", "stay", "fall", "reach", "remain", "suggest", "raise", "pass",
    "sell", "require", "report", "decide", "explain", "develop", "carry", "break", "receive",
    "agree", "support", "hit", "produce", "eat", "cover", "catch", "draw", "choose", "quick",
    "brown", "fox", "jumps", "lazy", "dog", "ing", "tion", "ed", "er", "ly", "es", "ment",
};

typedef struct train_word {
    int start, len; /* symbols in the shared array */
    int weight;
} train_word;

/* Splits a UTF-8 string into base-alphabet ids (every character is in the alphabet). */
static int split_chars(const vocab *v, const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        int len = 1;
        unsigned char c = (unsigned char)*s;
        if (c >= 0xf0)
            len = 4;
        else if (c >= 0xe0)
            len = 3;
        else if (c >= 0xc0)
            len = 2;
        char ch[5] = {0};
        memcpy(ch, s, (size_t)len);
        int id = vfind(v, ch);
        if (id < 0)
            return -1;
        out[n++] = id;
        s += len;
    }
    return n;
}

typedef struct pair_count {
    uint64_t key; /* a << 32 | b; 0 = empty (id 0 is never a BPE symbol) */
    long count;
} pair_count;

/* Byte-pair training: repeatedly merge the most frequent adjacent pair (ties: smallest ids)
 * until every word is one token or the BPE region is full. Returns 0, or -1 out of memory. */
static int train_merges(vocab *v)
{
    enum { VARIANTS = 4, MAXLEN = 32, TABLE = 1 << 16 };
    size_t n_words = sizeof k_words / sizeof k_words[0];
    int *sym = malloc(n_words * VARIANTS * MAXLEN * sizeof(int));
    train_word *words = malloc(n_words * VARIANTS * sizeof *words);
    pair_count *table = calloc(TABLE, sizeof *table);
    int rc = -1, nw = 0, nsym = 0;
    if (!sym || !words || !table)
        goto done;
    for (size_t r = 0; r < n_words; r++) {
        int w = (int)(6000 / (r + 5));
        char text[MAXLEN * 4];
        const char *sp = "\xe2\x96\x81";
        /* "▁word" (after a space), "word" (line start), "▁Word", "Word". */
        for (int k = 0; k < VARIANTS; k++) {
            snprintf(text, sizeof text, "%s%s", (k & 1) ? "" : sp, k_words[r]);
            if (k >= 2) {
                char *first = text + ((k & 1) ? 0 : 3);
                *first = (char)(*first - 32);
            }
            int len = split_chars(v, text, sym + nsym, MAXLEN);
            if (len < 2)
                continue;
            words[nw++] = (train_word){nsym, len, k == 0 ? w : w / (k == 1 ? 3 : 6) + 1};
            nsym += len;
        }
    }
    for (;;) {
        memset(table, 0, TABLE * sizeof *table);
        uint64_t best = 0;
        long best_count = 0;
        for (int i = 0; i < nw; i++)
            for (int j = 0; j + 1 < words[i].len; j++) {
                const int *s = sym + words[i].start + j;
                uint64_t key = (uint64_t)s[0] << 32 | (uint32_t)s[1];
                size_t h = (size_t)((key * 0x9e3779b97f4a7c15ull) >> 48) & (TABLE - 1);
                while (table[h].key && table[h].key != key)
                    h = (h + 1) & (TABLE - 1);
                table[h].key = key;
                table[h].count += words[i].weight;
                if (table[h].count > best_count ||
                    (table[h].count == best_count && key < best)) {
                    best_count = table[h].count;
                    best = key;
                }
            }
        if (best_count == 0)
            break;
        int a = (int)(best >> 32), b = (int)(best & 0xffffffffu);
        int m = vmerge(v, a, b);
        if (m == -2)
            break;
        if (m < 0)
            goto done;
        for (int i = 0; i < nw; i++) { /* apply the merge, left to right */
            int *s = sym + words[i].start, out = 0;
            for (int j = 0; j < words[i].len; j++) {
                if (j + 1 < words[i].len && s[j] == a && s[j + 1] == b) {
                    s[out++] = m;
                    j++;
                } else {
                    s[out++] = s[j];
                }
            }
            words[i].len = out;
        }
    }
    rc = 0;
done:
    free(sym);
    free(words);
    free(table);
    return rc;
}

/* Fills the rest of the BPE region with lowercase n-grams ("▁" or a letter, then letters), by
 * length, each built as (its prefix, its last letter). Returns 0, or -1 out of memory. */
static int fill_ngrams(vocab *v)
{
    enum { MAXN = 8 };
    int digits[MAXN];
    for (int n = 2; n <= MAXN && v->next_id < v->bpe_end; n++) {
        memset(digits, 0, sizeof digits); /* digit 0 of position 0 is "▁" */
        for (;;) {
            char buf[64];
            size_t len = 0;
            for (int i = 0; i < n; i++) {
                if (i == 0 && digits[0] == 0) {
                    memcpy(buf, "\xe2\x96\x81", 3);
                    len = 3;
                } else {
                    buf[len++] = (char)('a' + digits[i] - (i == 0 ? 1 : 0));
                }
            }
            buf[len] = '\0';
            if (vfind(v, buf) < 0) {
                char last[2] = {buf[len - 1], '\0'};
                buf[len - 1] = '\0';
                int a = vfind(v, buf), b = vfind(v, last);
                if (a >= 0 && b >= 0) {
                    int m = vmerge(v, a, b);
                    if (m == -2)
                        return 0;
                    if (m < 0)
                        return -1;
                }
            }
            int i = n - 1; /* odometer: position 0 has 27 symbols, the others 26 */
            while (i >= 0 && ++digits[i] == (i == 0 ? 27 : 26))
                digits[i--] = 0;
            if (i < 0)
                break;
        }
    }
    return 0;
}

/* ---- tokenizer.json ---- */


static void emit_tokenizer(const vocab *v, g4q_strbuf *b)
{
    char num[64];
    g4q_strbuf_str(b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
              "  \"added_tokens\": [");
    int first = 1;
    for (int id = 0; id < v->size; id++) {
        if (!is_added(v->size, id))
            continue;
        snprintf(num, sizeof num, "%s\n    {\"id\": %d, \"content\": ", first ? "" : ",", id);
        g4q_strbuf_str(b, num);
        g4q_strbuf_json_string(b, vstr(v, id), 0);
        g4q_strbuf_str(b, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                  "\"normalized\": false, \"special\": ");
        g4q_strbuf_str(b, is_special(vstr(v, id)) ? "true}" : "false}");
        first = 0;
    }
    g4q_strbuf_str(b, "\n  ],\n"
              "  \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, "
              "\"content\": \"\xe2\x96\x81\"},\n"
              "  \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, "
              "\"behavior\": \"MergedWithPrevious\", \"invert\": false},\n"
              "  \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": ["
              "{\"SpecialToken\": {\"id\": \"<bos>\", \"type_id\": 0}}, "
              "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": ["
              "{\"SpecialToken\": {\"id\": \"<bos>\", \"type_id\": 0}}, "
              "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
              "{\"SpecialToken\": {\"id\": \"<bos>\", \"type_id\": 1}}, "
              "{\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], \"special_tokens\": "
              "{\"<bos>\": {\"id\": \"<bos>\", \"ids\": [2], \"tokens\": [\"<bos>\"]}}},\n"
              "  \"decoder\": {\"type\": \"Sequence\", \"decoders\": ["
              "{\"type\": \"Replace\", \"pattern\": {\"String\": \"\xe2\x96\x81\"}, "
              "\"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]},\n"
              "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n"
              "    \"unk_token\": \"<unk>\",\n    \"continuing_subword_prefix\": null,\n"
              "    \"end_of_word_suffix\": null,\n    \"fuse_unk\": true,\n"
              "    \"byte_fallback\": true,\n    \"ignore_merges\": false,\n"
              "    \"vocab\": {");
    for (int id = 0; id < v->size; id++) {
        g4q_strbuf_str(b, id ? ",\n      " : "\n      ");
        g4q_strbuf_json_string(b, vstr(v, id), 0);
        snprintf(num, sizeof num, ": %d", id);
        g4q_strbuf_str(b, num);
    }
    g4q_strbuf_str(b, "\n    },\n    \"merges\": [");
    for (int i = 0; i < v->n_merges; i++) {
        g4q_strbuf_str(b, i ? ",\n      [" : "\n      [");
        g4q_strbuf_json_string(b, vstr(v, v->merge_a[i]), 0);
        g4q_strbuf_str(b, ", ");
        g4q_strbuf_json_string(b, vstr(v, v->merge_b[i]), 0);
        g4q_strbuf_str(b, "]");
    }
    g4q_strbuf_str(b, "\n    ]\n  }\n}\n");
}

g4q_status g4q_synth_tok_write_tokenizer(g4q_ctx *ctx, const char *dir, int vocab_size)
{
    if (vocab_size < G4Q_SYNTH_MIN_VOCAB || vocab_size > G4Q_SYNTH_MAX_VOCAB)
        return g4q_fail(ctx, G4Q_ERR_INVALID, "tokenizer: vocab %d: expected %d..%d", vocab_size,
                        G4Q_SYNTH_MIN_VOCAB, G4Q_SYNTH_MAX_VOCAB);
    char path[4096];
    G4Q_TRY(g4q_path_join(ctx, path, sizeof path, dir, "tokenizer.json"));
    vocab v = {.size = vocab_size, .bpe_end = top_first(vocab_size)};
    v.n_slots = 1;
    while (v.n_slots < 2 * (size_t)vocab_size)
        v.n_slots <<= 1;
    v.off = malloc((size_t)vocab_size * sizeof *v.off);
    v.slots = calloc(v.n_slots, sizeof *v.slots);
    g4q_strbuf b = {0};
    g4q_status st = G4Q_OK;
    if (!v.off || !v.slots) {
        st = g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < vocab_size; i++)
        v.off[i] = SIZE_MAX;
    if (put_fixed(&v) || train_merges(&v) || fill_ngrams(&v)) {
        st = g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    /* The region is full unless the n-grams ran out (vocabularies beyond ~500k). */
    for (int id = 0; id < vocab_size; id++)
        if (v.off[id] == SIZE_MAX) {
            st = g4q_fail(ctx, G4Q_ERR_INVALID, "%s: vocab %d is too large to fill (id %d)",
                          path, vocab_size, id);
            goto done;
        }
    emit_tokenizer(&v, &b);
    if (b.oom)
        st = g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", path);
    else
        st = g4q_write_file(ctx, path, b.p, b.len);
done:
    free(b.p);
    vfree(&v);
    return st;
}

/* ---- tokenizer_config.json, generation_config.json, chat_template.jinja ---- */

/* docs/gemma4.md §7.3: thinking off by default, an optional system turn, "assistant" rendered as
 * "model", contents trimmed, and the empty thought block after the generation prompt. */
static const char k_chat_template[] =
    "{#- Gemma 4 chat template of a gemma4q synthetic checkpoint (docs/gemma4.md 7.3). -#}\n"
    "{%- set thinking = enable_thinking is defined and enable_thinking -%}\n"
    "{{- bos_token -}}\n"
    "{%- set ns = namespace(first=0) -%}\n"
    "{%- if messages and messages[0]['role'] == 'system' -%}\n"
    "  {{- '<|turn>system\\n' -}}\n"
    "  {%- if thinking -%}{{- '<|think|>' -}}{%- endif -%}\n"
    "  {{- messages[0]['content'] | trim -}}\n"
    "  {{- '<turn|>\\n' -}}\n"
    "  {%- set ns.first = 1 -%}\n"
    "{%- elif thinking -%}\n"
    "  {{- '<|turn>system\\n<|think|><turn|>\\n' -}}\n"
    "{%- endif -%}\n"
    "{%- for message in messages[ns.first:] -%}\n"
    "  {%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}\n"
    "  {{- '<|turn>' + role + '\\n' + (message['content'] | trim) + '<turn|>\\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|turn>model\\n' -}}\n"
    "  {%- if not thinking -%}{{- '<|channel>thought\\n<channel|>' -}}{%- endif -%}\n"
    "{%- endif -%}\n";

static g4q_status write_json(g4q_ctx *ctx, const char *dir, const char *name, cJSON *j)
{
    char path[4096];
    g4q_status st = g4q_path_join(ctx, path, sizeof path, dir, name);
    if (st == G4Q_OK && !j)
        st = g4q_fail(ctx, G4Q_ERR_NOMEM, "%s: out of memory", name);
    if (st == G4Q_OK)
        st = g4q_json_write_file(ctx, path, j, 2);
    cJSON_Delete(j);
    return st;
}

static cJSON *tokenizer_config(void)
{
    static const char *const kv[] = {
        "audio_token", "<|audio|>",      "boa_token", "<|audio>",         "boi_token", "<|image>",
        "bos_token",   "<bos>",          "eoa_token", "<audio|>",         "eoc_token", "<channel|>",
        "eoi_token",   "<image|>",       "eos_token", "<eos>",            "eot_token", "<turn|>",
        "etc_token",   "<tool_call|>",   "etd_token", "<tool|>",          "etr_token",
        "<tool_response|>", "image_token", "<|image|>", "mask_token",     "<mask>",
        "pad_token",   "<pad>",          "soc_token", "<|channel>",       "sot_token", "<|turn>",
        "stc_token",   "<|tool_call>",   "std_token", "<|tool>",          "str_token",
        "<|tool_response>", "think_token", "<|think|>", "unk_token",     "<unk>",
        "video_token", "<|video|>",
    };
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddFalseToObject(j, "add_bos_token");
    cJSON_AddFalseToObject(j, "add_eos_token");
    for (size_t i = 0; i + 1 < sizeof kv / sizeof kv[0]; i += 2)
        cJSON_AddStringToObject(j, kv[i], kv[i + 1]);
    cJSON_AddFalseToObject(j, "clean_up_tokenization_spaces");
    cJSON_AddNumberToObject(j, "model_max_length", 1000000000000000019884624838656.0);
    cJSON_AddStringToObject(j, "padding_side", "left");
    cJSON_AddStringToObject(j, "tokenizer_class", "GemmaTokenizer");
    return j;
}

/* docs/gemma4.md §6.1: eos [1, 106, 50], pad 0, bos 2, suppress the two end-of-media markers,
 * sampling defaults. */
static cJSON *generation_config(int vocab_size)
{
    g4q_synth_mm_ids mm;
    g4q_synth_mm_ids_of(vocab_size, &mm);
    const int eos[] = {1, 106, 50};
    const int suppress[] = {mm.eoa, mm.eoi};
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddNumberToObject(j, "bos_token_id", 2);
    cJSON_AddTrueToObject(j, "do_sample");
    cJSON_AddItemToObject(j, "eos_token_id", cJSON_CreateIntArray(eos, 3));
    cJSON_AddNumberToObject(j, "pad_token_id", 0);
    cJSON_AddItemToObject(j, "suppress_tokens", cJSON_CreateIntArray(suppress, 2));
    cJSON_AddNumberToObject(j, "temperature", 1.0);
    cJSON_AddNumberToObject(j, "top_k", 64);
    cJSON_AddNumberToObject(j, "top_p", 0.95);
    return j;
}

g4q_status g4q_synth_tok_write_side_files(g4q_ctx *ctx, const char *dir, int vocab_size)
{
    G4Q_TRY(write_json(ctx, dir, "tokenizer_config.json", tokenizer_config()));
    G4Q_TRY(write_json(ctx, dir, "generation_config.json", generation_config(vocab_size)));
    char path[4096];
    G4Q_TRY(g4q_path_join(ctx, path, sizeof path, dir, "chat_template.jinja"));
    return g4q_write_file(ctx, path, k_chat_template, sizeof k_chat_template - 1);
}
