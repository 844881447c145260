
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_JWT_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_JWT_H_INCLUDED_


#include "ngx_graph_notify.h"


/*
 * The validationTokens of rich notifications, checked by the helper before
 * any item of their batch is written, and the identity platform's key set
 * that signs them.
 */


extern ngx_str_t  ngx_graph_notify_jwt_reason_names[];


/* directives */
char *ngx_graph_notify_jwt_tokens(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_graph_notify_jwt_audience(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_graph_notify_jwt_init_conf(ngx_conf_t *cf,
    ngx_graph_notify_main_conf_t *gmcf);
char *ngx_graph_notify_jwt_check_conf(ngx_conf_t *cf,
    ngx_graph_notify_main_conf_t *gmcf);

/* the helper */
ngx_int_t ngx_graph_notify_jwt_init(ngx_cycle_t *cycle,
    ngx_graph_notify_main_conf_t *gmcf);
ngx_uint_t ngx_graph_notify_jwt_busy(void);
void ngx_graph_notify_jwt_filter(ngx_graph_notify_job_t *jobs,
    ngx_uint_t *n, ngx_pool_t *pool);

/* key rotation: does a subscription at Graph use another key id? */
ngx_uint_t ngx_graph_notify_jwt_key_changed(ngx_str_t *configured,
    json_t *at_graph);

/* the workers: a decryption key was used */
void ngx_graph_notify_jwt_key_used(ngx_graph_notify_key_t *key);


#endif /* _NGX_GRAPH_NOTIFY_JWT_H_INCLUDED_ */
