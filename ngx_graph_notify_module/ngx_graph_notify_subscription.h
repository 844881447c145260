
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_SUBSCRIPTION_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_SUBSCRIPTION_H_INCLUDED_


#include "ngx_graph_notify.h"


/* one subscription as declared: one resource for one tenant */
typedef struct {
    ngx_str_t                   resource;
    ngx_str_t                   tenant;
    ngx_str_t                   url;
    ngx_str_t                   lifecycle_url;
    ngx_str_t                   change;
    ngx_str_t                   client_state;
    ngx_str_t                   rich;
    ngx_str_t                   certificate;
    ngx_str_t                   version;
    time_t                      expiry;
    ngx_uint_t                  call_records;
    ngx_uint_t                  explicit_state;
    u_char                     *file;
    ngx_uint_t                  line;
} ngx_graph_notify_sub_conf_t;


struct ngx_graph_notify_subs_conf_s {
    ngx_array_t                 subs;          /* sub_conf_t */
    ngx_array_t                 locations;     /* loc_conf_t * */
    ngx_shm_zone_t             *zone;
    ngx_flag_t                  prune;
    time_t                      longest_call;
    time_t                      latency;
    time_t                      outage;
};


char *ngx_graph_notify_subscription(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_graph_notify_subscription_prune(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_graph_notify_backfill(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_graph_notify_subscription_location(ngx_conf_t *cf,
    ngx_graph_notify_loc_conf_t *glcf);
ngx_int_t ngx_graph_notify_subscription_postconf(ngx_conf_t *cf);

/* the helper: reconcile, renew, react to lifecycle events, backfill */
ngx_int_t ngx_graph_notify_subscription_init(ngx_cycle_t *cycle,
    ngx_graph_notify_main_conf_t *gmcf);
void ngx_graph_notify_subscription_item(ngx_str_t *line);

/*
 * PATCH a subscription with a new encryption certificate (base64 DER) and
 * its id, e.g. for a key rotation; NGX_DECLINED if the subscription is
 * not one of ours or this helper does not act on subscriptions.
 */
ngx_int_t ngx_graph_notify_subscription_rotate(ngx_str_t *subscription_id,
    ngx_str_t *certificate, ngx_str_t *certificate_id);

/* the status page */
size_t ngx_graph_notify_subscription_status_size(
    ngx_graph_notify_main_conf_t *gmcf);
u_char *ngx_graph_notify_subscription_status_json(
    ngx_graph_notify_main_conf_t *gmcf, u_char *p, u_char *last);
u_char *ngx_graph_notify_subscription_status_prometheus(
    ngx_graph_notify_main_conf_t *gmcf, u_char *p, u_char *last);


#endif /* _NGX_GRAPH_NOTIFY_SUBSCRIPTION_H_INCLUDED_ */
