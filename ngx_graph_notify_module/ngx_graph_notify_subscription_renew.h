
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_SUBSCRIPTION_RENEW_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_SUBSCRIPTION_RENEW_H_INCLUDED_


#include "ngx_graph_notify_subscription.h"


void ngx_graph_notify_sub_start(ngx_graph_notify_task_t *task,
    ngx_str_t *bearer);
void ngx_graph_notify_sub_adopt(ngx_graph_notify_sub_t *s,
    json_t *obj);
void ngx_graph_notify_sub_plan(ngx_graph_notify_sub_t *s);
void ngx_graph_notify_sub_act(ngx_graph_notify_sub_t *s,
    ngx_graph_notify_sub_op_e op);
void ngx_graph_notify_sub_recreate(ngx_graph_notify_sub_t *s,
    const char *why);
void ngx_graph_notify_sub_publish(ngx_graph_notify_sub_t *s);


#endif /* _NGX_GRAPH_NOTIFY_SUBSCRIPTION_RENEW_H_INCLUDED_ */
