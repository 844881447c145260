
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_ratelog.h"


ngx_uint_t
ngx_graph_notify_ratelog_allow(ngx_graph_notify_ratelog_t *rl,
    ngx_uint_t *held)
{
    ngx_msec_t  now;

    now = ngx_current_msec;

    if (rl->logged && (ngx_msec_int_t) (now - rl->last) < 1000) {
        rl->suppressed++;
        return 0;
    }

    rl->logged = 1;
    rl->last = now;
    *held = rl->suppressed;
    rl->suppressed = 0;

    return 1;
}
