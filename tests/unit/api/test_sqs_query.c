/* Unit tests of api/sqs_query.c: the query protocol's XML answers escape
 * what XML needs escaped, runs of plain text included. */
#include <stdlib.h>

#include "api/sqs.h"
#include "test.h"

/* body as the Body of a message in ReceiveMessage's XML answer. */
static char *render_body(const char *body)
{
    cJSON *out = cJSON_CreateObject();
    cJSON *msgs = cJSON_AddArrayToObject(out, "Messages");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "Body", body);
    cJSON_AddItemToArray(msgs, m);
    size_t len = 0;
    char *xml = sqs_query_render("ReceiveMessage", out, "rid", &len);
    cJSON_Delete(out);
    CHECK(xml != NULL);
    if (!xml) return NULL;
    CHECK_INT(len, strlen(xml));
    const char *from = strstr(xml, "<Body>"), *to = strstr(xml, "</Body>");
    CHECK(from && to && to >= from + 6);
    char *text = from && to ? strndup(from + 6, (size_t)(to - from - 6)) : NULL;
    free(xml);
    return text;
}

static void escaping(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"", ""},
        {"plain text, a run of it", "plain text, a run of it"},
        {"a<b>&c\"d\re", "a&lt;b&gt;&amp;c&quot;d&#xD;e"},
        {"<<&&", "&lt;&lt;&amp;&amp;"},
        {"x&", "x&amp;"},
        {"\r", "&#xD;"},
        {"caf\xc3\xa9 'q'\n\ttab", "caf\xc3\xa9 'q'\n\ttab"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *got = render_body(cases[i].in);
        CHECK_STR(got, cases[i].want);
        free(got);
    }
}

int main(void)
{
    RUN(escaping);
    return TEST_RESULT();
}
