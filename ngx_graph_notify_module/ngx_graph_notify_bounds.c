
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_bounds.h"


static u_char *ngx_graph_notify_string_end(u_char *p, u_char *end);


/*
 * Whether a JSON text nests at most max levels; stops at the first level
 * too deep, before any parser sees the text.
 */

ngx_int_t
ngx_graph_notify_depth_ok(u_char *p, size_t len, ngx_uint_t max)
{
    u_char      *end;
    ngx_uint_t   depth;

    end = p + len;
    depth = 0;

    for ( /* void */ ; p < end; p++) {

        switch (*p) {

        case '"':
            p = ngx_graph_notify_string_end(p + 1, end);

            if (p == end) {
                return NGX_OK;
            }

            break;

        case '{':
        case '[':
            if (++depth > max) {
                return NGX_DECLINED;
            }

            break;

        case '}':
        case ']':
            if (depth) {
                depth--;
            }

            break;

        default:
            break;
        }
    }

    return NGX_OK;
}


/* the closing quote of a string whose text starts at p, or end */

static u_char *
ngx_graph_notify_string_end(u_char *p, u_char *end)
{
    while (p < end) {

        if (*p == '\\') {
            /* the escaped byte is never the closing quote */
            p += (end - p > 1) ? 2 : 1;
            continue;
        }

        if (*p == '"') {
            return p;
        }

        p++;
    }

    return end;
}
