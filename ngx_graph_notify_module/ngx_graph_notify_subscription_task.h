
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_SUBSCRIPTION_TASK_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_SUBSCRIPTION_TASK_H_INCLUDED_


#include "ngx_graph_notify_subscription.h"


void ngx_graph_notify_task_init(ngx_graph_notify_subs_t *m,
    ngx_graph_notify_task_t *task, ngx_str_t *tenant,
    ngx_graph_notify_task_pt start);
void ngx_graph_notify_task_schedule(ngx_graph_notify_task_t *task,
    ngx_msec_t delay);
void ngx_graph_notify_task_pump(ngx_event_t *ev);
ngx_graph_notify_http_t *ngx_graph_notify_task_request(
    ngx_graph_notify_task_t *task, const char *method, ngx_str_t *url,
    json_t *body, ngx_graph_notify_http_done_pt handler);
ngx_int_t ngx_graph_notify_task_url(ngx_graph_notify_task_t *task,
    ngx_str_t *next, ngx_str_t *url, const char *fmt, ...);
ngx_int_t ngx_graph_notify_task_next(json_t *root, ngx_str_t *next,
    ngx_uint_t *pages);
void ngx_graph_notify_task_done(ngx_graph_notify_task_t *task);
void ngx_graph_notify_task_retry(ngx_graph_notify_task_t *task,
    ngx_graph_notify_http_t *req);
ngx_msec_t ngx_graph_notify_task_backoff(ngx_graph_notify_task_t *task,
    ngx_graph_notify_http_t *req);
void ngx_graph_notify_sub_error(ngx_graph_notify_http_t *req,
    u_char *code, u_char *message);
ngx_int_t ngx_graph_notify_sub_dump(ngx_pool_t *pool, json_t *json,
    ngx_str_t *out);
json_t *ngx_graph_notify_sub_json(ngx_str_t *body);


#endif /* _NGX_GRAPH_NOTIFY_SUBSCRIPTION_TASK_H_INCLUDED_ */
