
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_SUBSCRIPTION_STATUS_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_SUBSCRIPTION_STATUS_H_INCLUDED_


#include "ngx_graph_notify_subscription.h"


size_t ngx_graph_notify_subscription_status_size(
    ngx_graph_notify_main_conf_t *gmcf);
u_char *ngx_graph_notify_subscription_status_json(
    ngx_graph_notify_main_conf_t *gmcf, u_char *p, u_char *last);
u_char *ngx_graph_notify_subscription_status_prometheus(
    ngx_graph_notify_main_conf_t *gmcf, u_char *p, u_char *last);


#endif /* _NGX_GRAPH_NOTIFY_SUBSCRIPTION_STATUS_H_INCLUDED_ */
