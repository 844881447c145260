
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_ratelog.h"


ngx_uint_t
ngx_graph_notify_ratelog_allow(ngx_graph_notify_ratelog_t *rl,
    ngx_uint_t *held)
{
    time_t  now;

    now = ngx_time();

    if (rl->last != 0 && now - rl->last < 1) {
        rl->suppressed++;
        return 0;
    }

    rl->last = now;
    *held = rl->suppressed;
    rl->suppressed = 0;

    return 1;
}
