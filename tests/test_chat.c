/* Tests of src/text/chat: the Gemma 4 prompt of docs/gemma4.md §7.3 and stop ids (§7.4). */
#include <stdlib.h>
#include <string.h>

#include "base/sys.h"
#include "testutil.h"
#include "text/chat.h"

static void expect_render(const g4q_chat_opts *o, const char *want)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    char *s = NULL;
    size_t len = 0;
    CHECK_STATUS(g4q_chat_render(&ctx, o, &s, &len), G4Q_OK);
    CHECK_MSG(s && strcmp(s, want) == 0 && len == strlen(want), "render:\n got  '%s'\n want '%s'",
              s ? s : "(null)", want);
    free(s);
}

static void test_render(void)
{
    /* §7.3: one user turn, thinking off, generation prompt; content trimmed. */
    g4q_chat_opts o = {.user = "  Hello there \n", .add_generation_prompt = 1};
    expect_render(&o, "<bos><|turn>user\nHello there<turn|>\n<|turn>model\n<|channel>thought\n"
                      "<channel|>");
    o.system = "\tYou are terse.\n";
    expect_render(&o, "<bos><|turn>system\nYou are terse.<turn|>\n<|turn>user\nHello there<turn|>\n"
                      "<|turn>model\n<|channel>thought\n<channel|>");
    /* Empty or whitespace-only system text gives no system turn. */
    o.system = " \n ";
    expect_render(&o, "<bos><|turn>user\nHello there<turn|>\n<|turn>model\n<|channel>thought\n"
                      "<channel|>");
    /* Thinking on: <|think|> opens the system turn, no empty thought block. */
    o.system = NULL;
    o.thinking = 1;
    expect_render(&o, "<bos><|turn>system\n<|think|><turn|>\n<|turn>user\nHello there<turn|>\n"
                      "<|turn>model\n");
    o.system = "Be brief.";
    expect_render(&o, "<bos><|turn>system\n<|think|>Be brief.<turn|>\n<|turn>user\nHello there"
                      "<turn|>\n<|turn>model\n");
    /* No generation prompt. */
    g4q_chat_opts p = {.user = "x"};
    expect_render(&p, "<bos><|turn>user\nx<turn|>\n");
    /* Unicode whitespace (U+3000, U+00A0) is trimmed; inner text is kept as is. */
    p.user = "\xe3\x80\x80\xc2\xa0 a  b\n\n\xc2\xa0";
    expect_render(&p, "<bos><|turn>user\na  b<turn|>\n");
    p.user = "";
    expect_render(&p, "<bos><|turn>user\n<turn|>\n");
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    char *s = NULL;
    g4q_chat_opts none = {0};
    CHECK_STATUS(g4q_chat_render(&ctx, &none, &s, NULL), G4Q_ERR_INVALID);
    CHECK(s == NULL);
}

static void test_stop_ids(void)
{
    g4q_ctx ctx;
    g4q_ctx_init(&ctx);
    char dir[4096], path[4200];
    g4q_test_tmpdir(dir, sizeof dir, "chat");
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    int32_t ids[4];
    size_t n = 0;

    const char *list = "{\"bos_token_id\": 2, \"eos_token_id\": [1, 106, 50], \"pad_token_id\": 0}";
    CHECK_STATUS(g4q_write_file(&ctx, path, list, strlen(list)), G4Q_OK);
    CHECK_STATUS(g4q_chat_stop_ids(&ctx, path, ids, 4, &n), G4Q_OK);
    CHECK(n == 3 && ids[0] == 1 && ids[1] == 106 && ids[2] == 50);

    const char *one = "{\"eos_token_id\": 1}";
    CHECK_STATUS(g4q_write_file(&ctx, path, one, strlen(one)), G4Q_OK);
    CHECK_STATUS(g4q_chat_stop_ids(&ctx, path, ids, 4, &n), G4Q_OK);
    CHECK(n == 1 && ids[0] == 1);

    const char *bad[] = {"{}",
                         "{\"eos_token_id\": \"1\"}",
                         "{\"eos_token_id\": [1, -3]}",
                         "{\"eos_token_id\": [1, 2.5]}",
                         "{\"eos_token_id\": []}",
                         "{\"eos_token_id\": [1, 2, 3, 4, 5]}",
                         "{\"eos_token_id\": [1,"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_STATUS(g4q_write_file(&ctx, path, bad[i], strlen(bad[i])), G4Q_OK);
        g4q_status st = g4q_chat_stop_ids(&ctx, path, ids, 4, &n);
        CHECK_MSG(st == G4Q_ERR_FORMAT && n == 0, "bad config %zu: %s", i, g4q_status_name(st));
    }
    snprintf(path, sizeof path, "%s/missing.json", dir);
    CHECK_STATUS(g4q_chat_stop_ids(&ctx, path, ids, 4, &n), G4Q_ERR_NOT_FOUND);
}

int main(void)
{
    test_render();
    test_stop_ids();
    return g4q_test_finish();
}
