/*
 * console_hostile - a function that attacks the operator's console with what
 * it controls: its log lines (markup, invalid UTF-8, control characters, a
 * line of 100,000 bytes, a flood of 3,000 lines) and its error (markup,
 * invalid UTF-8, control bytes). test_console_review.py reads the page.
 */
#include <stdio.h>
#include <string.h>

#include "spate.h"

#define MARKUP                                                                                     \
    "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"

int spate_handler(const spate_request *req, spate_response *res)
{
    (void)req;
    fprintf(stderr, "%s\n", MARKUP);
    fprintf(stderr, "bad \xff\xfe \xc3\x28 \x1b[31mred\x1b[0m \r over \x01\x7f end\n");
    static char line[100001];
    memset(line, 'A', sizeof line - 1);
    fprintf(stderr, "%s\n", line);
    for (int i = 0; i < 3000; i++) fprintf(stderr, "flood %d\n", i);
    fflush(stderr);
    return spate_fail(res, MARKUP " \xff\xfe \x01\x02 \x1b[2J");
}
