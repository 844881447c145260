
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#ifndef _NGX_GRAPH_NOTIFY_SUBSCRIPTION_H_INCLUDED_
#define _NGX_GRAPH_NOTIFY_SUBSCRIPTION_H_INCLUDED_


#include "ngx_graph_notify.h"


/*
 * What the files of the subscriptions share: the declarations, the state
 * of the helper that acts on them, and the status each one shows.
 */


#define NGX_GRAPH_NOTIFY_SUB_RESOURCE    192
#define NGX_GRAPH_NOTIFY_SUB_ID          64
#define NGX_GRAPH_NOTIFY_SUB_CODE        64
#define NGX_GRAPH_NOTIFY_SUB_MESSAGE     240


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


typedef enum {
    NGX_GRAPH_NOTIFY_SUB_NONE = 0,
    NGX_GRAPH_NOTIFY_SUB_OK,
    NGX_GRAPH_NOTIFY_SUB_FAILED
} ngx_graph_notify_sub_result_e;


typedef enum {
    NGX_GRAPH_NOTIFY_OP_CREATE = 0,
    NGX_GRAPH_NOTIFY_OP_RENEW,
    NGX_GRAPH_NOTIFY_OP_REAUTHORIZE,
    NGX_GRAPH_NOTIFY_OP_ROTATE
} ngx_graph_notify_sub_op_e;


/*
 * The last request to Graph for a subscription and the counts so far.
 * The helper keeps its own copy and publishes it whole under the zone's
 * lock: a status page must not read a status with another's message.
 */
typedef struct {
    time_t                      at;
    ngx_uint_t                  result;
    ngx_uint_t                  status;
    ngx_uint_t                  renewals;
    ngx_uint_t                  recreated;
    u_char                      code[NGX_GRAPH_NOTIFY_SUB_CODE];
    u_char                      message[NGX_GRAPH_NOTIFY_SUB_MESSAGE];
} ngx_graph_notify_sub_renewal_t;


/* what the status page shows of one subscription, in shared memory */
typedef struct {
    u_char                      resource[NGX_GRAPH_NOTIFY_SUB_RESOURCE];
    u_char                      tenant[40];
    u_char                      id[NGX_GRAPH_NOTIFY_SUB_ID];
    time_t                      expires;
    int64_t                     expires_ms;
    int64_t                     lifetime_ms;
    time_t                      notified;
    ngx_graph_notify_sub_renewal_t  renewal;
} ngx_graph_notify_sub_shm_t;


/* the helper's part of the zone */
typedef struct {
    ngx_uint_t                  n;
    ngx_pid_t                   renewer;
    time_t                      heartbeat;
    ngx_uint_t                  reconciled;
    ngx_uint_t                  backfill_runs;
    ngx_uint_t                  backfill_listed;
    ngx_uint_t                  backfill_found;
    time_t                      backfill_last;
    ngx_graph_notify_sub_shm_t  sub[1];
} ngx_graph_notify_subs_shm_t;


typedef struct ngx_graph_notify_task_s  ngx_graph_notify_task_t;

typedef void (*ngx_graph_notify_task_pt)(ngx_graph_notify_task_t *task,
    ngx_str_t *bearer);

/* a unit of work against Graph: paced, retried, one request at a time */
struct ngx_graph_notify_task_s {
    ngx_queue_t                 link;
    ngx_queue_t                 all;
    ngx_event_t                 timer;
    ngx_str_t                  *tenant;
    ngx_graph_notify_task_pt    start;
    ngx_pool_t                 *pool;
    ngx_str_t                   bearer;
    ngx_uint_t                  attempts;
    unsigned                    queued:1;
    unsigned                    running:1;
};


/* one subscription as the helper keeps it alive */
typedef struct {
    ngx_graph_notify_task_t       task;
    ngx_graph_notify_sub_conf_t  *conf;
    ngx_graph_notify_sub_shm_t   *shm;
    ngx_str_t                     certificate;
    ngx_str_t                     certificate_id;

    u_char                        id[NGX_GRAPH_NOTIFY_SUB_ID];
    size_t                        id_len;
    time_t                        expires;
    time_t                        renewed;
    time_t                        created;
    time_t                        notified;
    int64_t                       expires_ms;
    int64_t                       renewed_ms;
    ngx_graph_notify_sub_renewal_t  renewal;   /* published to shm */

    ngx_graph_notify_sub_op_e     op;
    ngx_int_t                     again;
    ngx_uint_t                    reauthorize;
    ngx_uint_t                    fix_url;
    ngx_uint_t                    failing;
    ngx_uint_t                    last_status;
    time_t                        backfill_from;
    ngx_uint_t                    listed;
} ngx_graph_notify_sub_t;


typedef struct ngx_graph_notify_sub_saving_s  ngx_graph_notify_sub_saving_t;

/* the helper that acts on the subscriptions */
typedef struct {
    ngx_cycle_t                    *cycle;
    ngx_graph_notify_main_conf_t   *gmcf;
    ngx_graph_notify_subs_conf_t   *scf;
    ngx_graph_notify_subs_shm_t    *sh;
    ngx_slab_pool_t                *shpool;
    ngx_graph_notify_queue_t       *queue;
    ngx_log_t                      *log;

    ngx_array_t                     subs;        /* sub_t */
    ngx_array_t                     lists;       /* sub_list_t */
    ngx_array_t                     backfills;   /* backfill_t * */

    ngx_queue_t                     ready;
    ngx_queue_t                     tasks;
    ngx_uint_t                      running;
    ngx_msec_t                      next_start;
    ngx_event_t                     pump;
    ngx_event_t                     tick;
    ngx_connection_t                dummy;

    ngx_str_t                       state_name;
    ngx_str_t                       lock_name;
    ngx_str_t                       events_name;
    ngx_fd_t                        lock_fd;
    ngx_uint_t                      locked;
    ngx_uint_t                      waiting_logged;
    time_t                          heartbeat;
    time_t                          saved;
    ngx_uint_t                      dirty;

    /* the state file's save in flight (_state.c) */
    ngx_graph_notify_sub_saving_t  *saving;
    ngx_uint_t                      save_again;
    ngx_uint_t                      save_failures;
    time_t                          save_logged;
} ngx_graph_notify_subs_t;


/* the helper acting on subscriptions; NULL in other processes */
extern ngx_graph_notify_subs_t  *ngx_graph_notify_subs;

/* ngx_graph_notify_subscription.c: the helper, its lock and heartbeat */
ngx_int_t ngx_graph_notify_subscription_init(ngx_cycle_t *cycle,
    ngx_graph_notify_main_conf_t *gmcf);
ngx_int_t ngx_graph_notify_sub_next(u_char **pos, u_char *last, u_char sep,
    ngx_str_t *item);
ngx_graph_notify_sub_t *ngx_graph_notify_sub_find(ngx_str_t *id);
ngx_uint_t ngx_graph_notify_sub_valid_id(const char *id, size_t len);
void ngx_graph_notify_sub_copy(u_char *dst, size_t size,
    const char *src, size_t len);
int64_t ngx_graph_notify_sub_now(void);
u_char *ngx_graph_notify_sub_time(u_char *buf, time_t t);


#endif /* _NGX_GRAPH_NOTIFY_SUBSCRIPTION_H_INCLUDED_ */
