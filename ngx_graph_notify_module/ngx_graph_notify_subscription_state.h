
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_SUBSCRIPTION_STATE_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_SUBSCRIPTION_STATE_H_INCLUDED_


#include "ngx_graph_notify_subscription.h"


ngx_int_t ngx_graph_notify_sub_state_init(ngx_graph_notify_subs_t *m);
void ngx_graph_notify_sub_state_cleanup(ngx_graph_notify_subs_t *m);
void ngx_graph_notify_sub_load(ngx_graph_notify_subs_t *m,
    time_t *heartbeat);
void ngx_graph_notify_sub_save(ngx_graph_notify_subs_t *m);
void ngx_graph_notify_sub_state_exit(void);


#endif /* _NGX_GRAPH_NOTIFY_SUBSCRIPTION_STATE_H_INCLUDED_ */
