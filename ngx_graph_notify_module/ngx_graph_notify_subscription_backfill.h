
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_SUBSCRIPTION_BACKFILL_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_SUBSCRIPTION_BACKFILL_H_INCLUDED_


#include "ngx_graph_notify_subscription.h"


void ngx_graph_notify_backfill_request(ngx_graph_notify_subs_t *m,
    ngx_graph_notify_sub_t *s, time_t from);
void ngx_graph_notify_backfill_cleanup(ngx_graph_notify_subs_t *m);


#endif /* _NGX_GRAPH_NOTIFY_SUBSCRIPTION_BACKFILL_H_INCLUDED_ */
