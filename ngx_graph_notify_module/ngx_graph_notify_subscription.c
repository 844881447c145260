
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_subscription.h"
#include "ngx_graph_notify_jwt.h"
#include "ngx_graph_notify_conf_file.h"

#include <sys/file.h>


/*
 * Subscriptions declared in nginx.conf, kept alive by the helper.
 *
 * On start (and so on every reload, which starts a new helper) the helper
 * takes a lock in its directory, so that only one helper per host acts on
 * subscriptions, reads its state file, lists the app's subscriptions per
 * tenant and API version, adopts those that match a declaration, creates
 * the missing ones and renews each at 50-75 % of its lifetime.  Lifecycle
 * events and renewals that find a subscription gone are acted on; gaps in
 * call-record notifications are filled by listing the call records of the
 * gap and fetching the versions not written yet.
 */


#define NGX_GRAPH_NOTIFY_SUB_ZONE        "graph_notify_subscriptions"
#define NGX_GRAPH_NOTIFY_SUB_STATE       "subscriptions.state"
#define NGX_GRAPH_NOTIFY_SUB_LOCK        "subscriptions.lock"
#define NGX_GRAPH_NOTIFY_SUB_EVENTS      "subscriptions.events"

#define NGX_GRAPH_NOTIFY_SUB_RUNNING     4
#define NGX_GRAPH_NOTIFY_SUB_BACKOFF_MIN 1000
#define NGX_GRAPH_NOTIFY_SUB_BACKOFF_MAX (10 * 60 * 1000)
#define NGX_GRAPH_NOTIFY_SUB_LOCK_RETRY  1000
#define NGX_GRAPH_NOTIFY_SUB_USERS_MAX   (16 * 1024 * 1024)
#define NGX_GRAPH_NOTIFY_SUB_PAGES_MAX   10000
/* room for the path and query after Graph's URL */
#define NGX_GRAPH_NOTIFY_SUB_PATH        512

/* Graph's limits per resource, minutes */
#define NGX_GRAPH_NOTIFY_SUB_MAX_RECORDS 4230
#define NGX_GRAPH_NOTIFY_SUB_MAX_CONV    1440
#define NGX_GRAPH_NOTIFY_SUB_MAX_OTHER   4320

#define NGX_GRAPH_NOTIFY_SUB_RESOURCE    192
#define NGX_GRAPH_NOTIFY_SUB_ID          64
#define NGX_GRAPH_NOTIFY_SUB_CODE        64
#define NGX_GRAPH_NOTIFY_SUB_MESSAGE     240

/* the longest clientState Graph takes */
#define NGX_GRAPH_NOTIFY_SUB_CLIENT_STATE 128


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


/* what the status page shows of one subscription, in shared memory */
typedef struct {
    u_char                      resource[NGX_GRAPH_NOTIFY_SUB_RESOURCE];
    u_char                      tenant[40];
    u_char                      id[NGX_GRAPH_NOTIFY_SUB_ID];
    time_t                      expires;
    int64_t                     expires_ms;
    int64_t                     lifetime_ms;
    time_t                      renewed;
    time_t                      notified;
    ngx_uint_t                  result;
    ngx_uint_t                  status;
    ngx_uint_t                  renewals;
    ngx_uint_t                  recreated;
    u_char                      code[NGX_GRAPH_NOTIFY_SUB_CODE];
    u_char                      message[NGX_GRAPH_NOTIFY_SUB_MESSAGE];
} ngx_graph_notify_sub_shm_t;


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


typedef struct {
    ngx_graph_notify_task_t     task;
    ngx_graph_notify_sub_conf_t  *conf;
    ngx_graph_notify_sub_shm_t  *shm;
    ngx_str_t                   certificate;
    ngx_str_t                   certificate_id;

    u_char                      id[NGX_GRAPH_NOTIFY_SUB_ID];
    size_t                      id_len;
    time_t                      expires;
    time_t                      renewed;
    time_t                      created;
    time_t                      notified;
    int64_t                     expires_ms;
    int64_t                     renewed_ms;

    ngx_graph_notify_sub_op_e   op;
    ngx_int_t                   again;
    ngx_uint_t                  reauthorize;
    ngx_uint_t                  fix_url;
    ngx_uint_t                  failing;
    ngx_uint_t                  last_status;
    time_t                      backfill_from;
    ngx_uint_t                  listed;
} ngx_graph_notify_sub_t;


/* the app's subscriptions of one tenant on one API version */
typedef struct {
    ngx_graph_notify_task_t     task;
    ngx_str_t                   version;
    ngx_str_t                   next;
    json_t                     *items;
    ngx_uint_t                  pages;
    ngx_uint_t                  failing;
} ngx_graph_notify_sub_list_t;


typedef struct {
    ngx_graph_notify_task_t     task;
    ngx_str_t                   id;
    ngx_str_t                   version;
} ngx_graph_notify_sub_delete_t;


/* call records of one tenant started within [from, to) */
typedef struct {
    ngx_graph_notify_task_t     task;
    ngx_str_t                   subscription;
    time_t                      from;
    time_t                      to;
    time_t                      wanted;
    ngx_str_t                   next;
    ngx_uint_t                  pages;
    ngx_uint_t                  found;
    ngx_uint_t                  listed;
    unsigned                    pending:1;
} ngx_graph_notify_backfill_t;


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
} ngx_graph_notify_subs_t;


static ngx_graph_notify_subs_conf_t *ngx_graph_notify_subs_conf(
    ngx_conf_t *cf, ngx_graph_notify_main_conf_t *gmcf);
static char *ngx_graph_notify_sub_add(ngx_conf_t *cf,
    ngx_graph_notify_subs_conf_t *scf, ngx_graph_notify_sub_conf_t *tmpl,
    ngx_str_t *resource, ngx_str_t *tenant);
static ngx_int_t ngx_graph_notify_sub_check(ngx_conf_t *cf,
    ngx_graph_notify_main_conf_t *gmcf, ngx_graph_notify_subs_conf_t *scf,
    ngx_graph_notify_sub_conf_t *sc);
static ngx_int_t ngx_graph_notify_sub_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static size_t ngx_graph_notify_sub_capacity(size_t size);

static ngx_int_t ngx_graph_notify_sub_lock(ngx_graph_notify_subs_t *m);
static void ngx_graph_notify_sub_begin(ngx_graph_notify_subs_t *m);
static void ngx_graph_notify_sub_tick(ngx_event_t *ev);
static void ngx_graph_notify_sub_load(ngx_graph_notify_subs_t *m,
    time_t *heartbeat);
static void ngx_graph_notify_sub_save(ngx_graph_notify_subs_t *m);
static void ngx_graph_notify_task_init(ngx_graph_notify_subs_t *m,
    ngx_graph_notify_task_t *task, ngx_str_t *tenant,
    ngx_graph_notify_task_pt start);
static void ngx_graph_notify_task_schedule(ngx_graph_notify_task_t *task,
    ngx_msec_t delay);
static void ngx_graph_notify_task_timer(ngx_event_t *ev);
static void ngx_graph_notify_task_pump(ngx_event_t *ev);
static ngx_graph_notify_http_t *ngx_graph_notify_task_request(
    ngx_graph_notify_task_t *task, const char *method, ngx_str_t *url,
    json_t *body, ngx_graph_notify_http_done_pt handler);
static ngx_int_t ngx_graph_notify_task_url(ngx_graph_notify_task_t *task,
    ngx_str_t *next, ngx_str_t *url, const char *fmt, ...);
static ngx_int_t ngx_graph_notify_task_next(json_t *root, ngx_str_t *next,
    ngx_uint_t *pages);
static void ngx_graph_notify_task_done(ngx_graph_notify_task_t *task);
static void ngx_graph_notify_task_retry(ngx_graph_notify_task_t *task,
    ngx_graph_notify_http_t *req);
static ngx_msec_t ngx_graph_notify_task_backoff(ngx_graph_notify_task_t *task,
    ngx_graph_notify_http_t *req);
static void ngx_graph_notify_list_start(ngx_graph_notify_task_t *task,
    ngx_str_t *bearer);
static void ngx_graph_notify_list_response(ngx_graph_notify_http_t *req);
static void ngx_graph_notify_list_reconcile(ngx_graph_notify_sub_list_t *l);
static ngx_uint_t ngx_graph_notify_sub_matches(ngx_graph_notify_sub_t *s,
    json_t *item);
static ngx_uint_t ngx_graph_notify_sub_ours(ngx_graph_notify_subs_t *m,
    json_t *item);
static void ngx_graph_notify_delete_start(ngx_graph_notify_task_t *task,
    ngx_str_t *bearer);
static void ngx_graph_notify_delete_response(ngx_graph_notify_http_t *req);
static void ngx_graph_notify_sub_start(ngx_graph_notify_task_t *task,
    ngx_str_t *bearer);
static void ngx_graph_notify_sub_response(ngx_graph_notify_http_t *req);
static void ngx_graph_notify_sub_adopt(ngx_graph_notify_sub_t *s,
    json_t *obj);
static void ngx_graph_notify_sub_plan(ngx_graph_notify_sub_t *s);
static void ngx_graph_notify_sub_recreate(ngx_graph_notify_sub_t *s,
    const char *why);
static void ngx_graph_notify_sub_failed(ngx_graph_notify_sub_t *s,
    ngx_graph_notify_http_t *req, const char *what);
static void ngx_graph_notify_sub_publish(ngx_graph_notify_sub_t *s);
static void ngx_graph_notify_backfill_request(ngx_graph_notify_subs_t *m,
    ngx_graph_notify_sub_t *s, time_t from);
static void ngx_graph_notify_backfill_start(ngx_graph_notify_task_t *task,
    ngx_str_t *bearer);
static void ngx_graph_notify_backfill_response(ngx_graph_notify_http_t *req);
static ngx_int_t ngx_graph_notify_backfill_page(
    ngx_graph_notify_backfill_t *b, json_t *value);
static ngx_graph_notify_sub_t *ngx_graph_notify_sub_find(ngx_str_t *id);
static void ngx_graph_notify_sub_event(ngx_graph_notify_subs_t *m,
    ngx_str_t *id, ngx_str_t *event);
static void ngx_graph_notify_sub_hand_over(ngx_graph_notify_subs_t *m,
    ngx_str_t *id, ngx_str_t *event);
static void ngx_graph_notify_sub_take_over(ngx_graph_notify_subs_t *m);
static void ngx_graph_notify_sub_error(ngx_graph_notify_http_t *req,
    u_char *code, u_char *message);
static ngx_uint_t ngx_graph_notify_sub_valid_id(const char *id, size_t len);
static void ngx_graph_notify_sub_copy(u_char *dst, size_t size,
    const char *src, size_t len);
static int64_t ngx_graph_notify_sub_parse_time(const char *s);
static int64_t ngx_graph_notify_sub_now(void);
static u_char *ngx_graph_notify_sub_time(u_char *buf, time_t t);
static json_t *ngx_graph_notify_sub_json(ngx_str_t *body);
static void ngx_graph_notify_sub_cleanup(void *data);
static const char *ngx_graph_notify_sub_verdict(
    ngx_graph_notify_sub_shm_t *e, int64_t now);


static ngx_graph_notify_subs_t  *ngx_graph_notify_subs;


/* configuration */

static ngx_graph_notify_subs_conf_t *
ngx_graph_notify_subs_conf(ngx_conf_t *cf, ngx_graph_notify_main_conf_t *gmcf)
{
    ngx_graph_notify_subs_conf_t  *scf;

    if (gmcf->subscriptions) {
        return gmcf->subscriptions;
    }

    scf = ngx_pcalloc(cf->pool, sizeof(ngx_graph_notify_subs_conf_t));
    if (scf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&scf->subs, cf->pool, 4,
                       sizeof(ngx_graph_notify_sub_conf_t))
        != NGX_OK
        || ngx_array_init(&scf->locations, cf->pool, 4,
                          sizeof(ngx_graph_notify_loc_conf_t *))
           != NGX_OK)
    {
        return NULL;
    }

    scf->prune = NGX_CONF_UNSET;
    scf->longest_call = NGX_CONF_UNSET;
    scf->latency = NGX_CONF_UNSET;
    scf->outage = NGX_CONF_UNSET;

    gmcf->subscriptions = scf;

    return scf;
}


char *
ngx_graph_notify_subscription(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    u_char                        *p, *last, *start, *q, *r, *t, *tend;
    u_char                        *tstart;
    time_t                         max;
    ngx_str_t                     *value, v, tenants, users, list, one, res;
    ngx_str_t                      id;
    ngx_uint_t                     i, line;
    ngx_graph_notify_sub_conf_t    tmpl;
    ngx_graph_notify_subs_conf_t  *scf;

    scf = ngx_graph_notify_subs_conf(cf, gmcf);
    if (scf == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    ngx_memzero(&tmpl, sizeof(ngx_graph_notify_sub_conf_t));
    ngx_str_null(&tenants);
    ngx_str_null(&users);
    tmpl.expiry = NGX_CONF_UNSET;
    tmpl.file = cf->conf_file->file.name.data;
    tmpl.line = cf->conf_file->line;

    res = value[1];

    while (res.len && res.data[0] == '/') {
        res.data++;
        res.len--;
    }

    if (res.len == 0 || res.len >= NGX_GRAPH_NOTIFY_SUB_RESOURCE - 40) {
        return "needs a resource, e.g. \"communications/callRecords\"";
    }

    for (i = 2; i < cf->args->nelts; i++) {
        v = value[i];

        p = ngx_strlchr(v.data, v.data + v.len, '=');
        if (p == NULL || p == v.data || p + 1 == v.data + v.len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", expected NAME=VALUE",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        v.data = p + 1;
        v.len = value[i].data + value[i].len - v.data;

#define ngx_graph_notify_param(name)                                          \
        ((size_t) (p - value[i].data) == sizeof(name) - 1                     \
         && ngx_strncmp(value[i].data, name, sizeof(name) - 1) == 0)

        if (ngx_graph_notify_param("tenant")) {
            tenants = v;

        } else if (ngx_graph_notify_param("url")) {
            tmpl.url = v;

        } else if (ngx_graph_notify_param("lifecycle_url")) {
            tmpl.lifecycle_url = v;

        } else if (ngx_graph_notify_param("change")) {
            tmpl.change = v;

        } else if (ngx_graph_notify_param("client_state")) {
            if (ngx_graph_notify_conf_secret(cf, &v, &tmpl.client_state,
                                             NGX_GRAPH_NOTIFY_SUB_CLIENT_STATE,
                                             "client state")
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            tmpl.explicit_state = 1;

        } else if (ngx_graph_notify_param("rich")) {
            tmpl.rich = v;

        } else if (ngx_graph_notify_param("expiry")) {
            tmpl.expiry = ngx_parse_time(&v, 1);

            if (tmpl.expiry == (time_t) NGX_ERROR || tmpl.expiry < 1) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid expiry \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

        } else if (ngx_graph_notify_param("version")) {
            if ((v.len != 4 || ngx_strncmp(v.data, "v1.0", 4) != 0)
                && (v.len != 4 || ngx_strncmp(v.data, "beta", 4) != 0))
            {
                return "takes version=v1.0 or version=beta";
            }

            tmpl.version = v;

        } else if (ngx_graph_notify_param("users")) {
            users = v;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

#undef ngx_graph_notify_param
    }

    if (tenants.len == 0) {
        return "needs tenant=GUID[,GUID...]";
    }

    if (tmpl.url.len == 0) {
        return "needs url=https://... (the URL Graph posts notifications to)";
    }

    if (tmpl.lifecycle_url.len == 0) {
        tmpl.lifecycle_url = tmpl.url;
    }

    /* what Graph allows per resource */

    if (res.len == sizeof("communications/callRecords") - 1
        && ngx_strncasecmp(res.data, (u_char *) "communications/callRecords",
                           res.len)
           == 0)
    {
        tmpl.call_records = 1;
        max = NGX_GRAPH_NOTIFY_SUB_MAX_RECORDS * 60;

        if (tmpl.change.len == 0) {
            ngx_str_set(&tmpl.change, "created,updated");
        }

        if (tmpl.rich.len) {
            return "rejects rich= for call records: Graph sends only basic "
                   "notifications for them";
        }

    } else if (res.len > sizeof("/callConversations") - 1
               && ngx_strncasecmp(res.data + res.len
                                  - (sizeof("/callConversations") - 1),
                                  (u_char *) "/callConversations",
                                  sizeof("/callConversations") - 1)
                  == 0)
    {
        max = NGX_GRAPH_NOTIFY_SUB_MAX_CONV * 60;

        if (tmpl.change.len == 0) {
            ngx_str_set(&tmpl.change, "updated");
        }

        if (tmpl.change.len != 7
            || ngx_strncmp(tmpl.change.data, "updated", 7) != 0)
        {
            return "takes only change=updated for callConversations";
        }

        if (tmpl.rich.len == 0) {
            return "needs rich=KEY_ID for callConversations: Graph sends "
                   "only rich notifications for them";
        }

        if (tmpl.version.len == 0) {
            ngx_str_set(&tmpl.version, "beta");
        }

    } else {
        max = NGX_GRAPH_NOTIFY_SUB_MAX_OTHER * 60;

        if (tmpl.change.len == 0) {
            ngx_str_set(&tmpl.change, "created,updated");
        }
    }

    if (tmpl.version.len == 0) {
        ngx_str_set(&tmpl.version, "v1.0");
    }

    /* change types: a comma list of what the resource takes */

    p = tmpl.change.data;
    last = p + tmpl.change.len;

    while (p < last) {
        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        one.data = start;
        one.len = p - start;
        p++;

        if (!((one.len == 7 && ngx_strncmp(one.data, "created", 7) == 0)
              || (one.len == 7 && ngx_strncmp(one.data, "updated", 7) == 0)
              || (one.len == 7 && ngx_strncmp(one.data, "deleted", 7) == 0
                  && !tmpl.call_records)))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "change type \"%V\" is not one that \"%V\" "
                               "takes (%s)", &one, &res,
                               tmpl.call_records ? "created, updated"
                                                 : "created, updated, "
                                                   "deleted");
            return NGX_CONF_ERROR;
        }
    }

    if (tmpl.expiry == NGX_CONF_UNSET) {
        /* a minute short of the most, for clocks that differ a little */
        tmpl.expiry = max - 60;

    } else if (tmpl.expiry > max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "expiry of %T minutes is over the %T that Graph "
                           "allows for \"%V\"",
                           tmpl.expiry / 60, max / 60, &res);
        return NGX_CONF_ERROR;
    }

    /* one user id per line of users=FILE, in place of "{id}" */

    if (users.len) {
        p = ngx_strlcasestrn(res.data, res.data + res.len,
                             (u_char *) "{id}", 4 - 1);

        if (p == NULL) {
            return "needs \"{id}\" in the resource with users=FILE";
        }

        if (ngx_graph_notify_conf_file(cf, &users,
                                       NGX_GRAPH_NOTIFY_SUB_USERS_MAX, &list)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }

    } else {
        if (ngx_strlcasestrn(res.data, res.data + res.len,
                             (u_char *) "{id}", 4 - 1)
            != NULL)
        {
            return "has \"{id}\" in the resource but no users=FILE";
        }

        list = res;
    }

    /* every tenant, every user */

    line = 0;
    p = list.data;
    last = list.data + list.len;

    while (p < last) {
        start = p;

        while (p < last && *p != LF) {
            p++;
        }

        id.data = start;
        id.len = p - start;
        p++;
        line++;

        if (users.len) {
            while (id.len && (id.data[id.len - 1] == CR
                              || id.data[id.len - 1] == ' '
                              || id.data[id.len - 1] == '\t'))
            {
                id.len--;
            }

            while (id.len && (id.data[0] == ' ' || id.data[0] == '\t')) {
                id.data++;
                id.len--;
            }

            if (id.len == 0 || id.data[0] == '#') {
                continue;
            }

            if (ngx_graph_notify_is_guid(&id) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "line %ui of \"%V\" is not a user id "
                                   "(a GUID)", line, &users);
                return NGX_CONF_ERROR;
            }

            one.len = res.len - 4 + id.len;
            one.data = ngx_pnalloc(cf->pool, one.len);
            if (one.data == NULL) {
                return NGX_CONF_ERROR;
            }

            q = ngx_strlcasestrn(res.data, res.data + res.len,
                                 (u_char *) "{id}", 4 - 1);
            r = ngx_cpymem(one.data, res.data, q - res.data);
            r = ngx_cpymem(r, id.data, id.len);
            ngx_memcpy(r, q + 4, res.data + res.len - (q + 4));

        } else {
            one = res;
            p = last;
        }

        /* the tenants */

        t = tenants.data;
        tend = tenants.data + tenants.len;

        while (t < tend) {
            tstart = t;

            while (t < tend && *t != ',') {
                t++;
            }

            v.data = tstart;
            v.len = t - tstart;
            t++;

            if (ngx_graph_notify_is_guid(&v) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid tenant id \"%V\", expected a "
                                   "GUID", &v);
                return NGX_CONF_ERROR;
            }

            if (ngx_graph_notify_sub_add(cf, scf, &tmpl, &one, &v)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_graph_notify_sub_add(ngx_conf_t *cf, ngx_graph_notify_subs_conf_t *scf,
    ngx_graph_notify_sub_conf_t *tmpl, ngx_str_t *resource,
    ngx_str_t *tenant)
{
    ngx_uint_t                    i;
    ngx_graph_notify_sub_conf_t  *sc;

    sc = scf->subs.elts;

    for (i = 0; i < scf->subs.nelts; i++) {
        if (sc[i].resource.len == resource->len
            && ngx_strncasecmp(sc[i].resource.data, resource->data,
                               resource->len) == 0
            && sc[i].tenant.len == tenant->len
            && ngx_strncasecmp(sc[i].tenant.data, tenant->data,
                               tenant->len) == 0
            && sc[i].url.len == tmpl->url.len
            && ngx_strncmp(sc[i].url.data, tmpl->url.data, tmpl->url.len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate subscription to \"%V\" for tenant "
                               "%V at \"%V\", first declared in %s:%ui",
                               resource, tenant, &tmpl->url, sc[i].file,
                               sc[i].line);
            return NGX_CONF_ERROR;
        }
    }

    sc = ngx_array_push(&scf->subs);
    if (sc == NULL) {
        return NGX_CONF_ERROR;
    }

    *sc = *tmpl;
    sc->resource = *resource;
    sc->tenant = *tenant;

    return NGX_CONF_OK;
}


char *
ngx_graph_notify_subscription_prune(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    ngx_str_t                     *value;
    ngx_graph_notify_subs_conf_t  *scf;

    scf = ngx_graph_notify_subs_conf(cf, gmcf);
    if (scf == NULL) {
        return NGX_CONF_ERROR;
    }

    if (scf->prune != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "on") == 0) {
        scf->prune = 1;

    } else if (ngx_strcmp(value[1].data, "off") == 0) {
        scf->prune = 0;

    } else {
        return "takes \"on\" or \"off\"";
    }

    return NGX_CONF_OK;
}


char *
ngx_graph_notify_backfill(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_graph_notify_main_conf_t *gmcf = conf;

    u_char                        *p;
    time_t                        *field, t;
    ngx_str_t                     *value, v;
    ngx_uint_t                     i;
    ngx_graph_notify_subs_conf_t  *scf;

    scf = ngx_graph_notify_subs_conf(cf, gmcf);
    if (scf == NULL) {
        return NGX_CONF_ERROR;
    }

    if (scf->longest_call != NGX_CONF_UNSET
        || scf->latency != NGX_CONF_UNSET
        || scf->outage != NGX_CONF_UNSET)
    {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        p = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

        if (p == NULL) {
            goto invalid;
        }

        v.data = p + 1;
        v.len = value[i].data + value[i].len - v.data;

        if (ngx_strncmp(value[i].data, "longest_call=", 13) == 0) {
            field = &scf->longest_call;

        } else if (ngx_strncmp(value[i].data, "latency=", 8) == 0) {
            field = &scf->latency;

        } else if (ngx_strncmp(value[i].data, "outage=", 7) == 0) {
            field = &scf->outage;

        } else {
            goto invalid;
        }

        t = ngx_parse_time(&v, 1);

        if (t == (time_t) NGX_ERROR || (field == &scf->outage && t < 1)) {
            goto invalid;
        }

        *field = t;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\", expected longest_call=TIME,"
                       " latency=TIME or outage=TIME", &value[i]);
    return NGX_CONF_ERROR;
}


char *
ngx_graph_notify_subscription_location(ngx_conf_t *cf,
    ngx_graph_notify_loc_conf_t *glcf)
{
    ngx_graph_notify_loc_conf_t  **loc;
    ngx_graph_notify_main_conf_t  *gmcf;

    /* what each graph_notify location accepts, for the checks below */

    gmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_graph_notify_module);

    if (gmcf->subscriptions == NULL) {
        return NGX_CONF_OK;
    }

    loc = ngx_array_push(&gmcf->subscriptions->locations);
    if (loc == NULL) {
        return NGX_CONF_ERROR;
    }

    *loc = glcf;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_graph_notify_subscription_postconf(ngx_conf_t *cf)
{
    size_t                         size;
    ngx_str_t                      name;
    ngx_uint_t                     i;
    ngx_graph_notify_sub_conf_t   *sc;
    ngx_graph_notify_subs_conf_t  *scf;
    ngx_graph_notify_main_conf_t  *gmcf;

    gmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_graph_notify_module);
    scf = gmcf->subscriptions;

    if (scf == NULL) {
        return NGX_OK;
    }

    ngx_conf_init_value(scf->prune, 0);
    ngx_conf_init_value(scf->longest_call, 24 * 60 * 60);
    ngx_conf_init_value(scf->latency, 150 * 60);
    ngx_conf_init_value(scf->outage, 10 * 60);

    if (scf->subs.nelts == 0) {
        return NGX_OK;
    }

    sc = scf->subs.elts;

    if (gmcf->app.app_id.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "graph_notify_subscription in %s:%ui needs the app's "
                      "credentials: graph_notify_app_id and "
                      "graph_notify_client_secret or "
                      "graph_notify_client_certificate",
                      sc[0].file, sc[0].line);
        return NGX_ERROR;
    }

    if (gmcf->used_file.len == 0 || scf->locations.nelts == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "graph_notify_subscription in %s:%ui needs a "
                      "location with \"graph_notify\" to receive its "
                      "notifications", sc[0].file, sc[0].line);
        return NGX_ERROR;
    }

    for (i = 0; i < scf->subs.nelts; i++) {
        if (ngx_graph_notify_sub_check(cf, gmcf, scf, &sc[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /* the status of each subscription, shared with the workers */

    size = offsetof(ngx_graph_notify_subs_shm_t, sub)
           + scf->subs.nelts * sizeof(ngx_graph_notify_sub_shm_t);
    size = ngx_align(size, ngx_pagesize) + 16 * ngx_pagesize;

    ngx_str_set(&name, NGX_GRAPH_NOTIFY_SUB_ZONE);

    scf->zone = ngx_shared_memory_add(cf, &name, size,
                                      &ngx_http_graph_notify_module);
    if (scf->zone == NULL) {
        return NGX_ERROR;
    }

    if (scf->zone->data) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "zone \"%V\" is already used", &name);
        return NGX_ERROR;
    }

    scf->zone->init = ngx_graph_notify_sub_init_zone;
    scf->zone->data = scf;

    return NGX_OK;
}


static ngx_int_t
ngx_graph_notify_sub_check(ngx_conf_t *cf, ngx_graph_notify_main_conf_t *gmcf,
    ngx_graph_notify_subs_conf_t *scf, ngx_graph_notify_sub_conf_t *sc)
{
    ngx_str_t                     *url, *cs;
    ngx_uint_t                     i, j, k, accepted, real;
    ngx_graph_notify_key_t        *key;
    ngx_graph_notify_loc_conf_t  **loc;

    real = (gmcf->graph_url.len == sizeof("https://graph.microsoft.com") - 1
            && ngx_strncasecmp(gmcf->graph_url.data,
                               (u_char *) "https://graph.microsoft.com",
                               gmcf->graph_url.len)
               == 0);

    for (k = 0; k < 2; k++) {
        url = k ? &sc->lifecycle_url : &sc->url;

        if (url->len > 8 && ngx_strncmp(url->data, "https://", 8) == 0) {
            continue;
        }

        if (!real && url->len > 7
            && ngx_strncmp(url->data, "http://", 7) == 0)
        {
            ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                          "graph_notify_subscription in %s:%ui: \"%V\" is "
                          "not HTTPS, which only a Graph stand-in accepts: "
                          "use it for tests only", sc->file, sc->line, url);
            continue;
        }

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "graph_notify_subscription in %s:%ui: invalid URL "
                      "\"%V\", Graph posts only to https://", sc->file,
                      sc->line, url);
        return NGX_ERROR;
    }

    loc = scf->locations.elts;

    /* rich=KEY_ID: a key some graph_notify location decrypts with */

    if (sc->rich.len) {
        for (i = 0; i < scf->locations.nelts && sc->certificate.len == 0;
             i++)
        {
            if (loc[i]->keys == NULL) {
                continue;
            }

            key = loc[i]->keys->elts;

            for (j = 0; j < loc[i]->keys->nelts; j++) {
                if (key[j].id.len == sc->rich.len
                    && ngx_strncmp(key[j].id.data, sc->rich.data,
                                   sc->rich.len) == 0)
                {
                    sc->certificate = key[j].certificate;
                    break;
                }
            }
        }

        if (sc->certificate.len == 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "graph_notify_subscription in %s:%ui: unknown "
                          "key \"%V\": rich= names the certificate id of a "
                          "graph_notify_decryption_key of a graph_notify "
                          "location", sc->file, sc->line, &sc->rich);
            return NGX_ERROR;
        }
    }

    /* the client state: one a graph_notify location accepts */

    if (!sc->explicit_state) {
        for (i = 0; i < scf->locations.nelts; i++) {
            if (loc[i]->client_states && loc[i]->client_states->nelts) {
                cs = loc[i]->client_states->elts;
                sc->client_state = cs[0];
                break;
            }
        }

        if (sc->client_state.len == 0) {
            ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                          "graph_notify_subscription in %s:%ui: no client "
                          "state to send: set graph_notify_client_state",
                          sc->file, sc->line);
        }

        return NGX_OK;
    }

    accepted = 0;

    for (i = 0; i < scf->locations.nelts && !accepted; i++) {
        if (loc[i]->client_states == NULL) {
            accepted = 1;
            break;
        }

        if (ngx_graph_notify_secret_match(&sc->client_state,
                                          loc[i]->client_states))
        {
            accepted = 1;
        }
    }

    if (!accepted) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "graph_notify_subscription in %s:%ui: no graph_notify "
                      "location accepts its client_state: add it with "
                      "graph_notify_client_state", sc->file, sc->line);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static size_t
ngx_graph_notify_sub_capacity(size_t size)
{
    return (size - 16 * ngx_pagesize
            - offsetof(ngx_graph_notify_subs_shm_t, sub))
           / sizeof(ngx_graph_notify_sub_shm_t);
}


static ngx_int_t
ngx_graph_notify_sub_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_graph_notify_subs_conf_t  *scf = shm_zone->data;

    size_t                        cap;
    ngx_uint_t                    i;
    ngx_slab_pool_t              *shpool;
    ngx_graph_notify_sub_conf_t  *sc;
    ngx_graph_notify_subs_shm_t  *sh;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    cap = ngx_graph_notify_sub_capacity(shm_zone->shm.size);

    if (data && shpool->data) {
        /* the same size again after a reload: the memory is reused */
        sh = shpool->data;

    } else {
        sh = ngx_slab_alloc(shpool, offsetof(ngx_graph_notify_subs_shm_t, sub)
                                    + cap * sizeof(ngx_graph_notify_sub_shm_t));
        if (sh == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(sh, offsetof(ngx_graph_notify_subs_shm_t, sub));
        shpool->data = sh;
    }

    sc = scf->subs.elts;

    ngx_shmtx_lock(&shpool->mutex);

    sh->n = ngx_min(scf->subs.nelts, cap);

    for (i = 0; i < sh->n; i++) {
        ngx_memzero(&sh->sub[i], sizeof(ngx_graph_notify_sub_shm_t));
        ngx_graph_notify_sub_copy(sh->sub[i].resource,
                                  sizeof(sh->sub[i].resource),
                                  (char *) sc[i].resource.data,
                                  sc[i].resource.len);
        ngx_graph_notify_sub_copy(sh->sub[i].tenant,
                                  sizeof(sh->sub[i].tenant),
                                  (char *) sc[i].tenant.data,
                                  sc[i].tenant.len);
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


/* the helper */

ngx_int_t
ngx_graph_notify_subscription_init(ngx_cycle_t *cycle,
    ngx_graph_notify_main_conf_t *gmcf)
{
    u_char                        *p;
    ngx_uint_t                     i;
    ngx_pool_cleanup_t            *cln;
    ngx_graph_notify_sub_t        *s;
    ngx_graph_notify_subs_t       *m;
    ngx_graph_notify_sub_conf_t   *sc;
    ngx_graph_notify_subs_conf_t  *scf;

    scf = gmcf->subscriptions;

    if (scf == NULL || scf->subs.nelts == 0 || scf->zone == NULL) {
        return NGX_OK;
    }

    m = ngx_pcalloc(cycle->pool, sizeof(ngx_graph_notify_subs_t));
    if (m == NULL) {
        return NGX_ERROR;
    }

    m->cycle = cycle;
    m->gmcf = gmcf;
    m->scf = scf;
    m->log = cycle->log;
    m->queue = gmcf->shm_zone->data;
    m->shpool = (ngx_slab_pool_t *) scf->zone->shm.addr;
    m->sh = m->shpool->data;
    m->lock_fd = NGX_INVALID_FILE;

    ngx_queue_init(&m->ready);
    ngx_queue_init(&m->tasks);

    m->dummy.fd = (ngx_socket_t) -1;

    m->pump.handler = ngx_graph_notify_task_pump;
    m->pump.data = &m->dummy;
    m->pump.log = m->log;
    m->pump.cancelable = 1;

    m->tick.handler = ngx_graph_notify_sub_tick;
    m->tick.data = &m->dummy;
    m->tick.log = m->log;
    m->tick.cancelable = 1;

    m->state_name.len = gmcf->path->name.len + 1
                        + sizeof(NGX_GRAPH_NOTIFY_SUB_STATE);
    m->state_name.data = ngx_pnalloc(cycle->pool, m->state_name.len);
    m->lock_name.len = gmcf->path->name.len + 1
                       + sizeof(NGX_GRAPH_NOTIFY_SUB_LOCK);
    m->lock_name.data = ngx_pnalloc(cycle->pool, m->lock_name.len);

    m->events_name.len = gmcf->path->name.len + 1
                         + sizeof(NGX_GRAPH_NOTIFY_SUB_EVENTS);
    m->events_name.data = ngx_pnalloc(cycle->pool, m->events_name.len);

    if (m->state_name.data == NULL || m->lock_name.data == NULL
        || m->events_name.data == NULL)
    {
        return NGX_ERROR;
    }

    p = ngx_sprintf(m->events_name.data,
                    "%V/" NGX_GRAPH_NOTIFY_SUB_EVENTS "%Z", &gmcf->path->name);
    m->events_name.len = p - m->events_name.data - 1;

    p = ngx_sprintf(m->state_name.data, "%V/" NGX_GRAPH_NOTIFY_SUB_STATE "%Z",
                    &gmcf->path->name);
    m->state_name.len = p - m->state_name.data - 1;

    p = ngx_sprintf(m->lock_name.data, "%V/" NGX_GRAPH_NOTIFY_SUB_LOCK "%Z",
                    &gmcf->path->name);
    m->lock_name.len = p - m->lock_name.data - 1;

    if (ngx_array_init(&m->subs, cycle->pool, scf->subs.nelts,
                       sizeof(ngx_graph_notify_sub_t))
        != NGX_OK
        || ngx_array_init(&m->lists, cycle->pool, scf->subs.nelts,
                          sizeof(ngx_graph_notify_sub_list_t))
           != NGX_OK
        || ngx_array_init(&m->backfills, cycle->pool, 4,
                          sizeof(ngx_graph_notify_backfill_t *))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    sc = scf->subs.elts;

    for (i = 0; i < scf->subs.nelts && i < m->sh->n; i++) {
        s = ngx_array_push(&m->subs);
        if (s == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(s, sizeof(ngx_graph_notify_sub_t));

        s->conf = &sc[i];
        s->shm = &m->sh->sub[i];
        s->certificate = sc[i].certificate;
        s->certificate_id = sc[i].rich;

        ngx_graph_notify_task_init(m, &s->task, &sc[i].tenant,
                                   ngx_graph_notify_sub_start);
    }

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_graph_notify_sub_cleanup;
    cln->data = m;

    ngx_graph_notify_subs = m;

    if (ngx_graph_notify_sub_lock(m) != NGX_OK) {
        ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                      "graph_notify: another helper acts on subscriptions, "
                      "waiting for it to stop");
        m->waiting_logged = 1;
    }

    ngx_add_timer(&m->tick, m->locked ? 1000 : NGX_GRAPH_NOTIFY_SUB_LOCK_RETRY);

    return NGX_OK;
}


static ngx_int_t
ngx_graph_notify_sub_lock(ngx_graph_notify_subs_t *m)
{
    if (m->lock_fd == NGX_INVALID_FILE) {
        m->lock_fd = ngx_open_file(m->lock_name.data, NGX_FILE_RDWR,
                                   NGX_FILE_CREATE_OR_OPEN,
                                   NGX_FILE_DEFAULT_ACCESS);

        if (m->lock_fd == NGX_INVALID_FILE) {
            ngx_log_error(NGX_LOG_ALERT, m->log, ngx_errno,
                          "graph_notify: " ngx_open_file_n " \"%V\" failed",
                          &m->lock_name);
            return NGX_ERROR;
        }

        (void) fcntl(m->lock_fd, F_SETFD, FD_CLOEXEC);
    }

    /* one helper per host renews: the lock goes with its process */

    if (flock(m->lock_fd, LOCK_EX|LOCK_NB) == -1) {
        if (ngx_errno != EWOULDBLOCK) {
            ngx_log_error(NGX_LOG_ALERT, m->log, ngx_errno,
                          "graph_notify: flock(\"%V\") failed",
                          &m->lock_name);
        }

        return NGX_DECLINED;
    }

    m->locked = 1;

    ngx_graph_notify_sub_begin(m);

    return NGX_OK;
}


static void
ngx_graph_notify_sub_begin(ngx_graph_notify_subs_t *m)
{
    time_t                        heartbeat, now, from;
    ngx_uint_t                    i, j, found;
    ngx_graph_notify_sub_t       *s;
    ngx_graph_notify_sub_list_t  *l;

    now = ngx_time();
    heartbeat = 0;

    ngx_graph_notify_sub_load(m, &heartbeat);

    ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                  "graph_notify: reconciling %ui subscription(s) with Graph",
                  m->subs.nelts);

    m->sh->renewer = ngx_pid;

    /* one listing per tenant and API version */

    s = m->subs.elts;

    for (i = 0; i < m->subs.nelts; i++) {
        l = m->lists.elts;
        found = 0;

        for (j = 0; j < m->lists.nelts; j++) {
            if (l[j].task.tenant->len == s[i].conf->tenant.len
                && ngx_strncasecmp(l[j].task.tenant->data,
                                   s[i].conf->tenant.data,
                                   s[i].conf->tenant.len) == 0
                && l[j].version.len == s[i].conf->version.len
                && ngx_strncmp(l[j].version.data, s[i].conf->version.data,
                               s[i].conf->version.len) == 0)
            {
                found = 1;
                break;
            }
        }

        if (found) {
            continue;
        }

        l = ngx_array_push(&m->lists);
        if (l == NULL) {
            return;
        }

        ngx_memzero(l, sizeof(ngx_graph_notify_sub_list_t));
        l->version = s[i].conf->version;

        ngx_graph_notify_task_init(m, &l->task, &s[i].conf->tenant,
                                   ngx_graph_notify_list_start);
    }

    /* the array has room for one listing per subscription: never moved */

    l = m->lists.elts;

    for (j = 0; j < m->lists.nelts; j++) {
        ngx_graph_notify_task_schedule(&l[j].task, 0);
    }

    /*
     * Down for longer than the outage threshold (or no state at all):
     * call records of the gap are looked for, once per tenant.
     */

    if (heartbeat == 0) {
        from = now;

    } else if (now - heartbeat > m->scf->outage) {
        from = heartbeat;

        ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                      "graph_notify: the last heartbeat is %T s old, "
                      "looking for call records of the gap", now - heartbeat);

    } else {
        from = 0;
    }

    if (from) {
        for (i = 0; i < m->subs.nelts; i++) {
            if (s[i].conf->call_records) {
                ngx_graph_notify_backfill_request(m, &s[i], from);
            }
        }
    }

    m->heartbeat = now;
    m->dirty = 1;
    ngx_graph_notify_sub_save(m);
}


static void
ngx_graph_notify_sub_tick(ngx_event_t *ev)
{
    time_t                    now, period;
    ngx_graph_notify_subs_t  *m;

    m = ngx_graph_notify_subs;
    now = ngx_time();

    if (!m->locked) {
        if (ngx_graph_notify_sub_lock(m) == NGX_OK) {
            ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                          "graph_notify: this helper now acts on "
                          "subscriptions");
        }

        if (!ngx_exiting) {
            ngx_add_timer(&m->tick, NGX_GRAPH_NOTIFY_SUB_LOCK_RETRY);
        }

        return;
    }

    /* the heartbeat: a third of the outage threshold, at most a minute */

    period = ngx_max(1, ngx_min(60, m->scf->outage / 3));

    m->sh->heartbeat = now;
    m->sh->renewer = ngx_pid;

    ngx_graph_notify_sub_take_over(m);

    if (now - m->saved >= period || m->dirty) {
        m->heartbeat = now;
        m->dirty = 1;
        ngx_graph_notify_sub_save(m);
    }

    if (!ngx_exiting) {
        ngx_add_timer(&m->tick, 1000);
    }
}


static void
ngx_graph_notify_sub_load(ngx_graph_notify_subs_t *m, time_t *heartbeat)
{
    json_t                  *root, *arr, *e, *v;
    size_t                   i, len;
    ngx_uint_t               k;
    json_error_t             err;
    const char              *resource, *tenant, *url, *id;
    ngx_graph_notify_sub_t  *s;

    root = json_load_file((char *) m->state_name.data, 0, &err);

    if (root == NULL) {
        if (ngx_strstr(err.text, "unable to open") == NULL) {
            ngx_log_error(NGX_LOG_WARN, m->log, 0,
                          "graph_notify: the state file \"%V\" is not valid "
                          "(%s, line %d): reconciling from Graph alone",
                          &m->state_name, err.text, err.line);
        }

        return;
    }

    arr = json_object_get(root, "subscriptions");
    v = json_object_get(root, "heartbeat");

    if (!json_is_integer(v) || !json_is_array(arr)) {
        ngx_log_error(NGX_LOG_WARN, m->log, 0,
                      "graph_notify: the state file \"%V\" is not valid: "
                      "reconciling from Graph alone", &m->state_name);
        json_decref(root);
        return;
    }

    *heartbeat = (time_t) json_integer_value(v);

    s = m->subs.elts;

    json_array_foreach(arr, i, e) {
        resource = json_string_value(json_object_get(e, "resource"));
        tenant = json_string_value(json_object_get(e, "tenant"));
        url = json_string_value(json_object_get(e, "url"));
        id = json_string_value(json_object_get(e, "id"));

        if (resource == NULL || tenant == NULL || url == NULL || id == NULL)
        {
            continue;
        }

        for (k = 0; k < m->subs.nelts; k++) {
            if (ngx_strlen(resource) != s[k].conf->resource.len
                || ngx_strncasecmp((u_char *) resource,
                                   s[k].conf->resource.data,
                                   s[k].conf->resource.len) != 0
                || ngx_strlen(tenant) != s[k].conf->tenant.len
                || ngx_strncasecmp((u_char *) tenant, s[k].conf->tenant.data,
                                   s[k].conf->tenant.len) != 0
                || ngx_strlen(url) != s[k].conf->url.len
                || ngx_strncmp(url, s[k].conf->url.data, s[k].conf->url.len)
                   != 0)
            {
                continue;
            }

            len = ngx_strlen(id);

            if (ngx_graph_notify_sub_valid_id(id, len)) {
                ngx_memcpy(s[k].id, id, len);
                s[k].id_len = len;
            }

            s[k].expires = json_integer_value(json_object_get(e, "expires"));
            s[k].renewed = json_integer_value(json_object_get(e, "renewed"));
            s[k].created = json_integer_value(json_object_get(e, "created"));
            s[k].notified = json_integer_value(json_object_get(e,
                                                               "notified"));

            /* the last renewal as the status page showed it */

            s[k].shm->renewed = s[k].renewed;
            s[k].shm->result = json_integer_value(json_object_get(e,
                                                                  "result"));
            s[k].shm->status = json_integer_value(json_object_get(e,
                                                                  "status"));
            s[k].shm->renewals = json_integer_value(json_object_get(e,
                                                               "renewals"));
            s[k].shm->recreated = json_integer_value(json_object_get(e,
                                                              "recreated"));

            if (s[k].shm->result > NGX_GRAPH_NOTIFY_SUB_FAILED) {
                s[k].shm->result = NGX_GRAPH_NOTIFY_SUB_NONE;
            }

            v = json_object_get(e, "code");
            ngx_graph_notify_sub_copy(s[k].shm->code, NGX_GRAPH_NOTIFY_SUB_CODE,
                                      json_is_string(v) ? json_string_value(v)
                                                        : "",
                                      json_string_length(v));

            v = json_object_get(e, "message");
            ngx_graph_notify_sub_copy(s[k].shm->message,
                                      NGX_GRAPH_NOTIFY_SUB_MESSAGE,
                                      json_is_string(v) ? json_string_value(v)
                                                        : "",
                                      json_string_length(v));

            ngx_graph_notify_sub_publish(&s[k]);
            break;
        }
    }

    json_decref(root);
}


static void
ngx_graph_notify_sub_save(ngx_graph_notify_subs_t *m)
{
    char                    *dump;
    u_char                   tmp[NGX_MAX_PATH];
    size_t                   len;
    json_t                  *root, *arr, *e;
    ssize_t                  n;
    ngx_fd_t                 fd;
    ngx_uint_t               i;
    ngx_graph_notify_sub_t  *s;

    if (!m->locked || !m->dirty) {
        return;
    }

    root = json_object();
    arr = json_array();

    if (root == NULL || arr == NULL
        || json_object_set_new(root, "heartbeat",
                               json_integer(m->heartbeat)) != 0
        || json_object_set(root, "subscriptions", arr) != 0)
    {
        goto failed;
    }

    s = m->subs.elts;

    for (i = 0; i < m->subs.nelts; i++) {
        e = json_pack("{s:s%,s:s%,s:s%,s:s%,s:I,s:I,s:I,s:I,s:i,s:i,s:s,"
                      "s:s,s:I,s:I}",
                      "resource", s[i].conf->resource.data,
                      s[i].conf->resource.len,
                      "tenant", s[i].conf->tenant.data, s[i].conf->tenant.len,
                      "url", s[i].conf->url.data, s[i].conf->url.len,
                      "id", s[i].id, s[i].id_len,
                      "expires", (json_int_t) s[i].expires,
                      "renewed", (json_int_t) s[i].renewed,
                      "created", (json_int_t) s[i].created,
                      "notified", (json_int_t) s[i].notified,
                      "result", (int) s[i].shm->result,
                      "status", (int) s[i].shm->status,
                      "code", (char *) s[i].shm->code,
                      "message", (char *) s[i].shm->message,
                      "renewals", (json_int_t) s[i].shm->renewals,
                      "recreated", (json_int_t) s[i].shm->recreated);

        if (e == NULL || json_array_append_new(arr, e) != 0) {
            goto failed;
        }
    }

    dump = json_dumps(root, JSON_COMPACT);
    if (dump == NULL) {
        goto failed;
    }

    json_decref(arr);
    json_decref(root);

    /* whole or not at all: a temporary file, synced, then renamed */

    ngx_snprintf(tmp, sizeof(tmp), "%V.tmp%Z", &m->state_name);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_CRIT, m->log, ngx_errno,
                      "graph_notify: " ngx_open_file_n " \"%s\" failed", tmp);
        free(dump);
        return;
    }

    len = ngx_strlen(dump);
    n = write(fd, dump, len);
    free(dump);

    if (n != (ssize_t) len || fsync(fd) == -1) {
        ngx_log_error(NGX_LOG_CRIT, m->log, ngx_errno,
                      "graph_notify: writing \"%s\" failed", tmp);
        (void) ngx_close_file(fd);
        (void) ngx_delete_file(tmp);
        return;
    }

    (void) ngx_close_file(fd);

    if (ngx_rename_file(tmp, m->state_name.data) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_CRIT, m->log, ngx_errno,
                      "graph_notify: " ngx_rename_file_n " \"%s\" to \"%V\" "
                      "failed", tmp, &m->state_name);
        return;
    }

    m->saved = ngx_time();
    m->dirty = 0;

    return;

failed:

    json_decref(arr);
    json_decref(root);

    ngx_log_error(NGX_LOG_ALERT, m->log, 0,
                  "graph_notify: no memory for the subscription state");
}


/* tasks: paced within the rate budget, a few at once */

static void
ngx_graph_notify_task_init(ngx_graph_notify_subs_t *m,
    ngx_graph_notify_task_t *task, ngx_str_t *tenant,
    ngx_graph_notify_task_pt start)
{
    task->tenant = tenant;
    task->start = start;
    task->timer.handler = ngx_graph_notify_task_timer;
    task->timer.data = task;
    task->timer.log = m->log;
    task->timer.cancelable = 1;
    ngx_queue_init(&task->link);
    ngx_queue_insert_tail(&m->tasks, &task->all);
}


static void
ngx_graph_notify_task_schedule(ngx_graph_notify_task_t *task,
    ngx_msec_t delay)
{
    ngx_graph_notify_subs_t  *m;

    m = ngx_graph_notify_subs;

    if (task->running || task->queued) {
        return;
    }

    if (delay) {
        ngx_add_timer(&task->timer, delay);
        return;
    }

    if (task->timer.timer_set) {
        ngx_del_timer(&task->timer);
    }

    task->queued = 1;
    ngx_queue_insert_tail(&m->ready, &task->link);

    if (!m->pump.posted && !m->pump.timer_set) {
        ngx_post_event(&m->pump, &ngx_posted_events);
    }
}


static void
ngx_graph_notify_task_timer(ngx_event_t *ev)
{
    ngx_graph_notify_task_schedule(ev->data, 0);
}


static void
ngx_graph_notify_task_pump(ngx_event_t *ev)
{
    ngx_int_t                 rc;
    ngx_str_t                 bearer;
    ngx_msec_t                spacing;
    ngx_queue_t              *q;
    ngx_graph_notify_task_t  *task;
    ngx_graph_notify_subs_t  *m;

    m = ngx_graph_notify_subs;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    spacing = 1000 / m->gmcf->rate;

    while (!ngx_queue_empty(&m->ready)
           && m->running < NGX_GRAPH_NOTIFY_SUB_RUNNING)
    {
        if ((ngx_msec_int_t) (m->next_start - ngx_current_msec) > 0) {
            ngx_add_timer(&m->pump, m->next_start - ngx_current_msec);
            return;
        }

        q = ngx_queue_head(&m->ready);
        ngx_queue_remove(q);

        task = ngx_queue_data(q, ngx_graph_notify_task_t, link);
        task->queued = 0;

        rc = ngx_graph_notify_token_get(task->tenant, &bearer);

        if (rc != NGX_OK) {
            /* signing in, or the identity platform fails: try again */
            ngx_graph_notify_task_schedule(task, rc == NGX_ERROR ? 5000 : 500);
            continue;
        }

        task->pool = ngx_create_pool(4096, m->log);
        if (task->pool == NULL) {
            ngx_graph_notify_task_schedule(task, 1000);
            continue;
        }

        task->bearer.data = ngx_pstrdup(task->pool, &bearer);
        if (task->bearer.data == NULL) {
            ngx_destroy_pool(task->pool);
            task->pool = NULL;
            ngx_graph_notify_task_schedule(task, 1000);
            continue;
        }

        task->bearer.len = bearer.len;
        task->running = 1;
        m->running++;
        m->next_start = ngx_current_msec + spacing;

        task->start(task, &task->bearer);
    }
}


static ngx_graph_notify_http_t *
ngx_graph_notify_task_request(ngx_graph_notify_task_t *task,
    const char *method, ngx_str_t *url, json_t *body,
    ngx_graph_notify_http_done_pt handler)
{
    char                     *dump;
    ngx_str_t                 name, value, b;
    ngx_graph_notify_http_t  *req;
    ngx_graph_notify_subs_t  *m;

    m = ngx_graph_notify_subs;

    req = ngx_graph_notify_http_create(task->pool, m->log, method, url);
    if (req == NULL) {
        return NULL;
    }

    ngx_str_set(&name, "Authorization");

    if (ngx_graph_notify_http_header(req, &name, &task->bearer) != NGX_OK) {
        return NULL;
    }

    if (body) {
        dump = json_dumps(body, JSON_COMPACT);
        if (dump == NULL) {
            return NULL;
        }

        b.len = ngx_strlen(dump);
        b.data = ngx_pnalloc(task->pool, b.len);

        if (b.data == NULL) {
            free(dump);
            return NULL;
        }

        ngx_memcpy(b.data, dump, b.len);
        free(dump);

        if (ngx_graph_notify_http_body(req, &b, "application/json")
            != NGX_OK)
        {
            return NULL;
        }

    } else if (ngx_strcmp(method, "POST") == 0) {
        ngx_str_null(&b);
        ngx_str_set(&name, "Content-Length");
        ngx_str_set(&value, "0");

        if (ngx_graph_notify_http_body(req, &b, "application/json")
            != NGX_OK)
        {
            return NULL;
        }
    }

    req->handler = handler;
    req->data = task;

    if (ngx_graph_notify_http_start(req) != NGX_OK) {
        return NULL;
    }

    ngx_graph_notify_stat_inc(m->queue, graph_requests);

    return req;
}


/*
 * The URL of a task's request, in its pool: the next page's link that
 * ngx_graph_notify_task_next() kept, if any, else Graph's URL followed by
 * the formatted path.
 */

static ngx_int_t
ngx_graph_notify_task_url(ngx_graph_notify_task_t *task, ngx_str_t *next,
    ngx_str_t *url, const char *fmt, ...)
{
    u_char                   *p, *last;
    size_t                    size;
    va_list                   args;
    ngx_graph_notify_subs_t  *m;

    if (next && next->len) {
        url->len = next->len;
        url->data = ngx_pnalloc(task->pool, url->len);

        if (url->data) {
            ngx_memcpy(url->data, next->data, url->len);
        }

        ngx_free(next->data);
        ngx_str_null(next);

        return url->data ? NGX_OK : NGX_ERROR;
    }

    m = ngx_graph_notify_subs;

    size = m->gmcf->graph_url.len + NGX_GRAPH_NOTIFY_SUB_PATH;

    url->data = ngx_pnalloc(task->pool, size);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    last = url->data + size;
    p = ngx_cpymem(url->data, m->gmcf->graph_url.data,
                   m->gmcf->graph_url.len);

    va_start(args, fmt);
    p = ngx_vslprintf(p, last, fmt, args);
    va_end(args);

    if (p == last) {
        /* cut short */
        return NGX_ERROR;
    }

    url->len = p - url->data;

    return NGX_OK;
}


/*
 * A page's "@odata.nextLink", kept for the next request across the pool of
 * this one: NGX_OK if there is a next page, NGX_DONE at the last one (or
 * after NGX_GRAPH_NOTIFY_SUB_PAGES_MAX), NGX_ERROR without memory.
 */

static ngx_int_t
ngx_graph_notify_task_next(json_t *root, ngx_str_t *next, ngx_uint_t *pages)
{
    size_t   len;
    json_t  *link;

    ngx_str_null(next);

    link = json_object_get(root, "@odata.nextLink");

    if (!json_is_string(link) || ++*pages >= NGX_GRAPH_NOTIFY_SUB_PAGES_MAX) {
        return NGX_DONE;
    }

    len = json_string_length(link);

    next->data = ngx_alloc(len, ngx_cycle->log);
    if (next->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(next->data, json_string_value(link), len);
    next->len = len;

    return NGX_OK;
}


static void
ngx_graph_notify_task_done(ngx_graph_notify_task_t *task)
{
    ngx_graph_notify_subs_t  *m;

    m = ngx_graph_notify_subs;

    if (task->pool) {
        ngx_destroy_pool(task->pool);
        task->pool = NULL;
    }

    if (task->running) {
        task->running = 0;
        m->running--;
    }

    if (!ngx_queue_empty(&m->ready) && !m->pump.posted
        && !m->pump.timer_set)
    {
        ngx_post_event(&m->pump, &ngx_posted_events);
    }
}


/* a failed request, or one not sent: the task again after its backoff */

static void
ngx_graph_notify_task_retry(ngx_graph_notify_task_t *task,
    ngx_graph_notify_http_t *req)
{
    ngx_msec_t  delay;

    if (req && req->status == 401) {
        /* a token Graph no longer takes: the next attempt gets a new one */
        ngx_graph_notify_token_invalidate(task->tenant, &task->bearer);
    }

    /* before the pool that holds the request goes */
    delay = ngx_graph_notify_task_backoff(task, req);

    ngx_graph_notify_task_done(task);
    ngx_graph_notify_task_schedule(task, delay);
}


static ngx_msec_t
ngx_graph_notify_task_backoff(ngx_graph_notify_task_t *task,
    ngx_graph_notify_http_t *req)
{
    ngx_msec_t  delay;

    if (req && req->status == 429 && req->retry_after >= 0) {
        task->attempts++;
        return ngx_max(1000, (ngx_msec_t) req->retry_after * 1000);
    }

    delay = NGX_GRAPH_NOTIFY_SUB_BACKOFF_MIN
            << ngx_min(task->attempts, 10);

    delay = ngx_min(delay, NGX_GRAPH_NOTIFY_SUB_BACKOFF_MAX);

    if (req && req->retry_after > 0) {
        delay = ngx_max(delay, (ngx_msec_t) req->retry_after * 1000);
    }

    task->attempts++;

    /* up to a quarter more, so that retries do not line up */
    return delay + ngx_random() % (delay / 4 + 1);
}


/* reconciliation: list, adopt, create, prune */

static void
ngx_graph_notify_list_start(ngx_graph_notify_task_t *task, ngx_str_t *bearer)
{
    ngx_str_t                     url;
    ngx_graph_notify_sub_list_t  *l;

    l = (ngx_graph_notify_sub_list_t *) task;

    /* the first page: the listing starts */

    if (l->next.len == 0 && l->items == NULL) {
        l->items = json_array();
        if (l->items == NULL) {
            goto failed;
        }
    }

    if (ngx_graph_notify_task_url(task, &l->next, &url, "/%V/subscriptions",
                                  &l->version)
        == NGX_OK
        && ngx_graph_notify_task_request(task, "GET", &url, NULL,
                                         ngx_graph_notify_list_response)
           != NULL)
    {
        return;
    }

failed:

    /* the listing starts over */

    json_decref(l->items);
    l->items = NULL;
    l->pages = 0;

    ngx_graph_notify_task_retry(task, NULL);
}


static void
ngx_graph_notify_list_response(ngx_graph_notify_http_t *req)
{
    json_t                       *root, *value;
    ngx_graph_notify_task_t      *task;
    ngx_graph_notify_sub_list_t  *l;
    u_char                        code[NGX_GRAPH_NOTIFY_SUB_CODE];
    u_char                        message[NGX_GRAPH_NOTIFY_SUB_MESSAGE];

    task = req->data;
    l = (ngx_graph_notify_sub_list_t *) task;

    if (req->status == 200) {
        root = ngx_graph_notify_sub_json(&req->body);
        value = json_object_get(root, "value");

        if (json_is_array(value)
            && ngx_graph_notify_task_next(root, &l->next, &l->pages)
               != NGX_ERROR)
        {
            (void) json_array_extend(l->items, value);
            json_decref(root);

            ngx_graph_notify_task_done(task);
            task->attempts = 0;

            if (l->next.len) {
                ngx_graph_notify_task_schedule(task, 0);
                return;
            }

            if (l->failing) {
                l->failing = 0;
                ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                              "graph_notify: listing subscriptions of "
                              "tenant %V works again", task->tenant);
            }

            ngx_graph_notify_list_reconcile(l);
            return;
        }

        json_decref(root);
    }

    ngx_graph_notify_sub_error(req, code, message);

    if (!l->failing || l->failing != (ngx_uint_t) req->status + 1) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "graph_notify: listing the subscriptions of tenant %V "
                      "failed: %l %s %s; retrying (check the app's "
                      "permissions and graph_notify_graph_url)",
                      task->tenant, req->status, code, message);
        l->failing = req->status + 1;
    }

    if (l->next.len) {
        ngx_free(l->next.data);
        ngx_str_null(&l->next);
    }

    json_decref(l->items);
    l->items = NULL;
    l->pages = 0;

    ngx_graph_notify_task_retry(task, req);
}


static void
ngx_graph_notify_list_reconcile(ngx_graph_notify_sub_list_t *l)
{
    json_t                         *item, *found;
    size_t                          i, len;
    ngx_uint_t                      k, adopted;
    const char                     *id;
    ngx_graph_notify_sub_t         *s;
    ngx_graph_notify_subs_t        *m;
    ngx_graph_notify_sub_delete_t  *d;

    m = ngx_graph_notify_subs;
    s = m->subs.elts;

    for (k = 0; k < m->subs.nelts; k++) {
        if (s[k].conf->tenant.len != l->task.tenant->len
            || ngx_strncasecmp(s[k].conf->tenant.data, l->task.tenant->data,
                               l->task.tenant->len) != 0
            || s[k].conf->version.len != l->version.len
            || ngx_strncmp(s[k].conf->version.data, l->version.data,
                           l->version.len) != 0)
        {
            continue;
        }

        s[k].listed = 1;
        found = NULL;

        json_array_foreach(l->items, i, item) {
            if (json_object_get(item, "_adopted")
                || !ngx_graph_notify_sub_matches(&s[k], item))
            {
                continue;
            }

            id = json_string_value(json_object_get(item, "id"));

            /* the one of our state first, else the first that matches */

            if (found == NULL
                || (id && ngx_strlen(id) == s[k].id_len
                    && ngx_strncmp(id, s[k].id, s[k].id_len) == 0))
            {
                found = item;
            }
        }

        if (found) {
            (void) json_object_set_new(found, "_adopted", json_true());

            id = json_string_value(json_object_get(found, "id"));
            adopted = !(id && ngx_strlen(id) == s[k].id_len
                        && ngx_strncmp(id, s[k].id, s[k].id_len) == 0);

            if (adopted) {
                s[k].renewed = 0;
                s[k].renewed_ms = 0;
            }

            ngx_graph_notify_sub_adopt(&s[k], found);

            ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                          "graph_notify: subscription %*s to \"%V\" for "
                          "tenant %V %s, expires in %T s",
                          s[k].id_len, s[k].id, &s[k].conf->resource,
                          &s[k].conf->tenant,
                          adopted ? "adopted" : "found",
                          s[k].expires - ngx_time());

            if (ngx_graph_notify_jwt_key_changed(&s[k].certificate_id,
                         json_object_get(found, "encryptionCertificateId")))
            {
                /* rich= names another key now: its certificate at once */

                ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                              "graph_notify: subscription %*s uses another "
                              "encryption key than \"%V\", sending its "
                              "certificate", s[k].id_len, s[k].id,
                              &s[k].certificate_id);

                s[k].op = NGX_GRAPH_NOTIFY_OP_ROTATE;
                ngx_graph_notify_task_schedule(&s[k].task, 0);
                continue;
            }

            ngx_graph_notify_sub_plan(&s[k]);
            continue;
        }

        if (s[k].id_len) {
            ngx_graph_notify_sub_recreate(&s[k], "is gone from Graph");
            continue;
        }

        s[k].op = NGX_GRAPH_NOTIFY_OP_CREATE;
        ngx_graph_notify_task_schedule(&s[k].task, 0);
    }

    /* this app's subscriptions to our URLs that nothing declares */

    json_array_foreach(l->items, i, item) {
        if (json_object_get(item, "_adopted")
            || !ngx_graph_notify_sub_ours(m, item))
        {
            continue;
        }

        id = json_string_value(json_object_get(item, "id"));

        if (id == NULL) {
            continue;
        }

        len = ngx_strlen(id);

        if (!m->scf->prune) {
            ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                          "graph_notify: subscription %s of tenant %V points "
                          "at this server but is not declared; "
                          "\"graph_notify_subscription_prune on\" deletes it",
                          id, l->task.tenant);
            continue;
        }

        d = ngx_pcalloc(m->cycle->pool, sizeof(ngx_graph_notify_sub_delete_t));
        if (d == NULL) {
            break;
        }

        d->id.data = ngx_pnalloc(m->cycle->pool, len);
        if (d->id.data == NULL) {
            break;
        }

        ngx_memcpy(d->id.data, id, len);
        d->id.len = len;
        d->version = l->version;

        ngx_graph_notify_task_init(m, &d->task, l->task.tenant,
                                   ngx_graph_notify_delete_start);
        ngx_graph_notify_task_schedule(&d->task, 0);
    }

    json_decref(l->items);
    l->items = NULL;
    l->pages = 0;

    m->sh->reconciled++;
    m->dirty = 1;
    ngx_graph_notify_sub_save(m);
}


static ngx_uint_t
ngx_graph_notify_sub_has(ngx_str_t *list, u_char *v, size_t len)
{
    u_char  *p, *last, *start;

    p = list->data;
    last = p + list->len;

    while (p < last) {
        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        if ((size_t) (p - start) == len && ngx_strncmp(start, v, len) == 0) {
            return 1;
        }

        p++;
    }

    return 0;
}


static ngx_uint_t
ngx_graph_notify_sub_matches(ngx_graph_notify_sub_t *s, json_t *item)
{
    u_char      *p, *last, *start;
    size_t       len;
    ngx_str_t    theirs;
    ngx_uint_t   n, mine;
    const char  *resource, *url, *change;

    resource = json_string_value(json_object_get(item, "resource"));
    url = json_string_value(json_object_get(item, "notificationUrl"));
    change = json_string_value(json_object_get(item, "changeType"));

    if (resource == NULL || url == NULL || change == NULL) {
        return 0;
    }

    while (*resource == '/') {
        resource++;
    }

    len = ngx_strlen(resource);

    if (len != s->conf->resource.len
        || ngx_strncasecmp((u_char *) resource, s->conf->resource.data, len)
           != 0
        || ngx_strlen(url) != s->conf->url.len
        || ngx_strncmp(url, s->conf->url.data, s->conf->url.len) != 0)
    {
        return 0;
    }

    /* the same set of change types, in any order */

    theirs.data = (u_char *) change;
    theirs.len = ngx_strlen(change);

    n = 0;
    p = theirs.data;
    last = p + theirs.len;

    while (p < last) {
        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        if (!ngx_graph_notify_sub_has(&s->conf->change, start, p - start)) {
            return 0;
        }

        n++;
        p++;
    }

    mine = 0;
    p = s->conf->change.data;
    last = p + s->conf->change.len;

    while (p < last) {
        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        if (!ngx_graph_notify_sub_has(&theirs, start, p - start)) {
            return 0;
        }

        mine++;
        p++;
    }

    return n == mine;
}


static ngx_uint_t
ngx_graph_notify_sub_ours(ngx_graph_notify_subs_t *m, json_t *item)
{
    size_t                   len;
    ngx_uint_t               k;
    const char              *url;
    ngx_graph_notify_sub_t  *s;

    url = json_string_value(json_object_get(item, "notificationUrl"));

    if (url == NULL) {
        return 0;
    }

    len = ngx_strlen(url);
    s = m->subs.elts;

    /* declared, perhaps listed under another API version: not stale */

    for (k = 0; k < m->subs.nelts; k++) {
        if (ngx_graph_notify_sub_matches(&s[k], item)) {
            return 0;
        }
    }

    for (k = 0; k < m->subs.nelts; k++) {
        if ((len == s[k].conf->url.len
             && ngx_strncmp(url, s[k].conf->url.data, len) == 0)
            || (len == s[k].conf->lifecycle_url.len
                && ngx_strncmp(url, s[k].conf->lifecycle_url.data, len) == 0))
        {
            return 1;
        }
    }

    return 0;
}


static void
ngx_graph_notify_delete_start(ngx_graph_notify_task_t *task,
    ngx_str_t *bearer)
{
    ngx_str_t                       url;
    ngx_graph_notify_sub_delete_t  *d;

    d = (ngx_graph_notify_sub_delete_t *) task;

    if (ngx_graph_notify_task_url(task, NULL, &url, "/%V/subscriptions/%V",
                                  &d->version, &d->id)
        == NGX_OK
        && ngx_graph_notify_task_request(task, "DELETE", &url, NULL,
                                         ngx_graph_notify_delete_response)
           != NULL)
    {
        return;
    }

    ngx_graph_notify_task_retry(task, NULL);
}


static void
ngx_graph_notify_delete_response(ngx_graph_notify_http_t *req)
{
    ngx_msec_t                      delay;
    ngx_graph_notify_task_t        *task;
    ngx_graph_notify_sub_delete_t  *d;

    task = req->data;
    d = (ngx_graph_notify_sub_delete_t *) task;

    if (req->status == 204 || req->status == 200 || req->status == 404) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "graph_notify: deleted subscription %V of tenant %V, "
                      "no longer declared", &d->id, task->tenant);
        ngx_graph_notify_task_done(task);
        return;
    }

    if (req->status == 401) {
        ngx_graph_notify_token_invalidate(task->tenant, &task->bearer);
    }

    delay = ngx_graph_notify_task_backoff(task, req);

    if (task->attempts > 10) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "graph_notify: deleting subscription %V failed (%l), "
                      "giving up", &d->id, req->status);
        ngx_graph_notify_task_done(task);
        return;
    }

    ngx_graph_notify_task_done(task);
    ngx_graph_notify_task_schedule(task, delay);
}


/* create, renew, reauthorize, rotate the key of one subscription */

static void
ngx_graph_notify_sub_start(ngx_graph_notify_task_t *task, ngx_str_t *bearer)
{
    json_t                   *body;
    ngx_str_t                 url;
    const char               *method;
    ngx_graph_notify_sub_t   *s;
    u_char                    expires[sizeof("1970-01-01T00:00:00Z")];

    s = (ngx_graph_notify_sub_t *) task;

    if (s->id_len == 0) {
        s->op = NGX_GRAPH_NOTIFY_OP_CREATE;
    }

    /* .../subscriptions, .../subscriptions/ID[/reauthorize] */

    if (ngx_graph_notify_task_url(task, NULL, &url,
                                  "/%V/subscriptions%s%*s%s",
                                  &s->conf->version,
                                  s->op == NGX_GRAPH_NOTIFY_OP_CREATE
                                  ? "" : "/",
                                  s->op == NGX_GRAPH_NOTIFY_OP_CREATE
                                  ? (size_t) 0 : s->id_len,
                                  s->id,
                                  s->op == NGX_GRAPH_NOTIFY_OP_REAUTHORIZE
                                  ? "/reauthorize" : "")
        != NGX_OK)
    {
        goto failed;
    }

    *ngx_graph_notify_sub_time(expires, ngx_time() + s->conf->expiry) = '\0';

    body = NULL;

    switch (s->op) {

    case NGX_GRAPH_NOTIFY_OP_CREATE:
        method = "POST";

        body = json_pack("{s:s%,s:s%,s:s%,s:s%,s:s,s:s}",
                         "changeType", s->conf->change.data,
                         s->conf->change.len,
                         "notificationUrl", s->conf->url.data,
                         s->conf->url.len,
                         "lifecycleNotificationUrl",
                         s->conf->lifecycle_url.data,
                         s->conf->lifecycle_url.len,
                         "resource", s->conf->resource.data,
                         s->conf->resource.len,
                         "expirationDateTime", expires,
                         "latestSupportedTlsVersion", "v1_2");

        if (body && s->conf->client_state.len
            && json_object_set_new(body, "clientState",
                                   json_stringn((char *)
                                                s->conf->client_state.data,
                                                s->conf->client_state.len))
               != 0)
        {
            json_decref(body);
            body = NULL;
        }

        if (body && s->certificate.len
            && (json_object_set_new(body, "includeResourceData",
                                    json_true()) != 0
                || json_object_set_new(body, "encryptionCertificate",
                       json_stringn((char *) s->certificate.data,
                                    s->certificate.len)) != 0
                || json_object_set_new(body, "encryptionCertificateId",
                       json_stringn((char *) s->certificate_id.data,
                                    s->certificate_id.len)) != 0))
        {
            json_decref(body);
            body = NULL;
        }

        break;

    case NGX_GRAPH_NOTIFY_OP_RENEW:
        method = "PATCH";
        body = json_pack("{s:s}", "expirationDateTime", expires);

        /* adopted after a 409: it may point elsewhere, Graph revalidates */

        if (body && s->fix_url
            && json_object_set_new(body, "notificationUrl",
                                   json_stringn((char *) s->conf->url.data,
                                                s->conf->url.len))
               != 0)
        {
            json_decref(body);
            body = NULL;
        }

        break;

    case NGX_GRAPH_NOTIFY_OP_REAUTHORIZE:
        method = "POST";
        break;

    default: /* NGX_GRAPH_NOTIFY_OP_ROTATE */
        method = "PATCH";
        body = json_pack("{s:s%,s:s%}",
                         "encryptionCertificate", s->certificate.data,
                         s->certificate.len,
                         "encryptionCertificateId", s->certificate_id.data,
                         s->certificate_id.len);
        break;
    }

    if (body == NULL && s->op != NGX_GRAPH_NOTIFY_OP_REAUTHORIZE) {
        goto failed;
    }

    /* the secret client state is in the body, never in a log line */

    if (ngx_graph_notify_task_request(task, method, &url, body,
                                      ngx_graph_notify_sub_response)
        != NULL)
    {
        json_decref(body);
        return;
    }

    json_decref(body);

failed:

    ngx_graph_notify_task_retry(task, NULL);
}


static void
ngx_graph_notify_sub_response(ngx_graph_notify_http_t *req)
{
    u_char                   *p, *last, *start;
    long                      status;
    json_t                   *obj;
    time_t                    now;
    ngx_msec_t                delay;
    ngx_uint_t                next;
    ngx_graph_notify_sub_t   *s;
    ngx_graph_notify_subs_t  *m;
    ngx_graph_notify_task_t  *task;

    task = req->data;
    s = (ngx_graph_notify_sub_t *) task;
    m = ngx_graph_notify_subs;
    status = req->status;
    now = ngx_time();
    delay = 0;
    next = 0;

    obj = NULL;

    if (status == 200 || status == 201) {
        obj = ngx_graph_notify_sub_json(&req->body);

        if (!json_is_string(json_object_get(obj, "expirationDateTime"))) {
            json_decref(obj);
            obj = NULL;
            status = 502;
        }
    }

    if (status == 401) {
        /* a token Graph no longer takes: the next attempt gets a new one */
        ngx_graph_notify_token_invalidate(task->tenant, &task->bearer);
    }

    switch (s->op) {

    case NGX_GRAPH_NOTIFY_OP_CREATE:

        if (obj) {
            ngx_graph_notify_sub_adopt(s, obj);
            s->created = now;
            s->renewed = now;
            s->renewed_ms = ngx_graph_notify_sub_now();
            s->shm->result = NGX_GRAPH_NOTIFY_SUB_OK;
            s->shm->status = status;
            s->shm->code[0] = '\0';
            s->shm->message[0] = '\0';

            ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                          "graph_notify: created subscription %*s to \"%V\" "
                          "for tenant %V, expires in %T s",
                          s->id_len, s->id, &s->conf->resource,
                          &s->conf->tenant, s->expires - now);

            if (s->backfill_from && s->conf->call_records) {
                ngx_graph_notify_backfill_request(m, s, s->backfill_from);
            }

            s->backfill_from = 0;
            break;
        }

        if (status == 409) {
            /* "Subscription Id <id> already exists ...": adopt it */

            last = req->body.data + req->body.len;
            p = ngx_strlcasestrn(req->body.data, last,
                                 (u_char *) "Subscription Id ",
                                 sizeof("Subscription Id ") - 2);

            if (p) {
                p += sizeof("Subscription Id ") - 1;
                start = p;

                while (p < last && (isalnum(*p) || *p == '-')) {
                    p++;
                }

                if (p > start && p - start < NGX_GRAPH_NOTIFY_SUB_ID) {
                    s->id_len = p - start;
                    ngx_memcpy(s->id, start, s->id_len);
                    s->renewed = 0;
                    s->renewed_ms = 0;

                    ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                                  "graph_notify: subscription %*s to \"%V\" "
                                  "for tenant %V exists already: adopted",
                                  s->id_len, s->id, &s->conf->resource,
                                  &s->conf->tenant);

                    s->op = NGX_GRAPH_NOTIFY_OP_RENEW;
                    s->fix_url = 1;
                    m->dirty = 1;
                    next = 1;
                    break;
                }
            }
        }

        ngx_graph_notify_sub_failed(s, req, "creating");
        delay = ngx_graph_notify_task_backoff(task, req);
        break;

    case NGX_GRAPH_NOTIFY_OP_REAUTHORIZE:

        if (status == 204 || status == 200) {
            s->reauthorize = 0;
            s->shm->result = NGX_GRAPH_NOTIFY_SUB_OK;
            s->shm->status = status;

            ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                          "graph_notify: subscription %*s reauthorized",
                          s->id_len, s->id);

            s->op = NGX_GRAPH_NOTIFY_OP_RENEW;
            break;
        }

        /* fall through */

    default: /* RENEW, ROTATE */

        if (obj) {
            ngx_graph_notify_sub_adopt(s, obj);
            s->renewed = now;
            s->renewed_ms = ngx_graph_notify_sub_now();
            s->shm->renewals++;
            s->shm->result = NGX_GRAPH_NOTIFY_SUB_OK;
            s->shm->status = status;
            s->shm->code[0] = '\0';
            s->shm->message[0] = '\0';

            ngx_log_error(NGX_LOG_INFO, m->log, 0,
                          "graph_notify: %s subscription %*s, expires in "
                          "%T s",
                          s->op == NGX_GRAPH_NOTIFY_OP_ROTATE
                          ? "new key for" : "renewed",
                          s->id_len, s->id, s->expires - now);

            s->reauthorize = 0;
            s->fix_url = 0;
            s->op = NGX_GRAPH_NOTIFY_OP_RENEW;
            break;
        }

        if (status == 404) {
            ngx_graph_notify_sub_recreate(s, "was not found on renewal");
            next = 1;
            break;
        }

        if (s->op == NGX_GRAPH_NOTIFY_OP_RENEW && s->reauthorize
            && status >= 400 && status < 500 && status != 429)
        {
            /* renewing is refused: at least reauthorize it */
            ngx_graph_notify_sub_failed(s, req, "renewing");
            s->op = NGX_GRAPH_NOTIFY_OP_REAUTHORIZE;
            next = 1;
            break;
        }

        ngx_graph_notify_sub_failed(s, req,
                                    s->op == NGX_GRAPH_NOTIFY_OP_REAUTHORIZE
                                    ? "reauthorizing" : "renewing");
        delay = ngx_graph_notify_task_backoff(task, req);
        break;
    }

    json_decref(obj);

    if (s->shm->result == NGX_GRAPH_NOTIFY_SUB_OK && delay == 0) {
        if (s->failing) {
            ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                          "graph_notify: subscription %*s to \"%V\" for "
                          "tenant %V works again", s->id_len, s->id,
                          &s->conf->resource, &s->conf->tenant);
            s->failing = 0;
            s->last_status = 0;
        }

        task->attempts = 0;
    }

    s->shm->renewed = now;
    ngx_graph_notify_sub_publish(s);

    /* on disk at once: a helper stopped by a reload exits without notice */
    m->dirty = 1;
    ngx_graph_notify_sub_save(m);

    ngx_graph_notify_task_done(task);

    if (s->again) {
        /* a lifecycle event came meanwhile */
        s->op = s->again - 1;
        s->again = 0;

        if (s->op == NGX_GRAPH_NOTIFY_OP_CREATE) {
            ngx_graph_notify_sub_recreate(s, "was removed (lifecycle event)");
            return;
        }

        ngx_graph_notify_task_schedule(task, 0);
        return;
    }

    if (delay || next) {
        /* a retry, or the next step at once (adopt, reauthorize, create) */
        ngx_graph_notify_task_schedule(task, delay);
        return;
    }

    ngx_graph_notify_sub_plan(s);
}


static void
ngx_graph_notify_sub_adopt(ngx_graph_notify_sub_t *s, json_t *obj)
{
    size_t       len;
    int64_t      expires;
    const char  *id;

    id = json_string_value(json_object_get(obj, "id"));

    if (id) {
        len = ngx_strlen(id);

        if (ngx_graph_notify_sub_valid_id(id, len)) {
            ngx_memcpy(s->id, id, len);
            s->id_len = len;
        }
    }

    expires = ngx_graph_notify_sub_parse_time(
                  json_string_value(json_object_get(obj,
                                                    "expirationDateTime")));
    if (expires) {
        s->expires_ms = expires;
        s->expires = (time_t) (expires / 1000);
    }

    ngx_graph_notify_subs->dirty = 1;
    ngx_graph_notify_sub_publish(s);
}


static void
ngx_graph_notify_sub_plan(ngx_graph_notify_sub_t *s)
{
    int64_t     now, base, lifetime, at;
    ngx_msec_t  delay;

    now = ngx_graph_notify_sub_now();

    s->op = NGX_GRAPH_NOTIFY_OP_RENEW;

    if (s->expires_ms == 0) {
        s->expires_ms = (int64_t) s->expires * 1000;
    }

    if (s->expires_ms <= now + 1000) {
        ngx_graph_notify_task_schedule(&s->task, 0);
        return;
    }

    /*
     * At 50-75 % of the lifetime, at a random point: hundreds of
     * subscriptions created together do not renew in the same second.
     */

    if (s->renewed_ms == 0 && s->renewed) {
        s->renewed_ms = (int64_t) s->renewed * 1000;
    }

    base = (s->renewed_ms && s->renewed_ms <= now) ? s->renewed_ms : now;
    lifetime = s->expires_ms - base;

    at = base + lifetime * (500 + ngx_random() % 251) / 1000;
    delay = (at > now) ? (ngx_msec_t) (at - now) : 1;

    s->shm->lifetime_ms = lifetime;

    ngx_graph_notify_task_schedule(&s->task, delay);
}


static void
ngx_graph_notify_sub_recreate(ngx_graph_notify_sub_t *s, const char *why)
{
    time_t  now;

    now = ngx_time();

    ngx_log_error(NGX_LOG_WARN, ngx_graph_notify_subs->log, 0,
                  "graph_notify: subscription %*s to \"%V\" for tenant %V "
                  "%s: creating it again%s", s->id_len, s->id,
                  &s->conf->resource, &s->conf->tenant, why,
                  s->conf->call_records
                  ? ", then looking for call records of the gap" : "");

    if (s->backfill_from == 0) {
        s->backfill_from = s->renewed ? s->renewed
                                      : (s->created ? s->created : now);
    }

    s->id_len = 0;
    s->expires = 0;
    s->expires_ms = 0;
    s->renewed = 0;
    s->renewed_ms = 0;
    s->op = NGX_GRAPH_NOTIFY_OP_CREATE;
    s->shm->recreated++;

    ngx_graph_notify_subs->dirty = 1;
    ngx_graph_notify_sub_publish(s);

    ngx_graph_notify_task_schedule(&s->task, 0);
}


static void
ngx_graph_notify_sub_failed(ngx_graph_notify_sub_t *s,
    ngx_graph_notify_http_t *req, const char *what)
{
    const char               *advice;
    ngx_graph_notify_subs_t  *m;

    m = ngx_graph_notify_subs;

    ngx_graph_notify_sub_error(req, s->shm->code, s->shm->message);

    s->shm->result = NGX_GRAPH_NOTIFY_SUB_FAILED;
    s->shm->status = req->status;

    switch (req->status) {

    case 0:
        advice = "Graph is unreachable: check graph_notify_graph_url and "
                 "graph_notify_ca_file";
        break;

    case 400:
        advice = "Graph refused the request; when creating, Graph could "
                 "not validate the notification URL: it must reach a "
                 "graph_notify location of this server over HTTPS and "
                 "answer within 10 s";
        break;

    case 401:
        advice = "Graph refused the app's token: check graph_notify_app_id "
                 "and its credential";
        break;

    case 403:
        advice = "the app lacks the application permission for this "
                 "resource (CallRecords.Read.All for call records, admin "
                 "consent granted) or the tenant's quota of subscriptions "
                 "is reached (100 for call records)";
        break;

    case 429:
        advice = "Graph throttles the app: retrying after Retry-After";
        break;

    default:
        advice = req->status >= 500
                 ? "Graph fails: retrying with backoff"
                 : "retrying with backoff";
        break;
    }

    /* one line per kind of failure, not one per retry */

    if (s->last_status == (ngx_uint_t) req->status + 1) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, m->log, 0,
                       "graph_notify: %s subscription to \"%V\" failed "
                       "again: %l", what, &s->conf->resource, req->status);
        return;
    }

    s->last_status = req->status + 1;
    s->failing = 1;

    ngx_log_error(NGX_LOG_ERR, m->log, 0,
                  "graph_notify: %s subscription %*s to \"%V\" for tenant "
                  "%V at \"%V\" failed: %l %s \"%s\"; %s",
                  what, s->id_len, s->id, &s->conf->resource,
                  &s->conf->tenant, &s->conf->url, req->status,
                  s->shm->code, s->shm->message, advice);
}


static void
ngx_graph_notify_sub_publish(ngx_graph_notify_sub_t *s)
{
    ngx_graph_notify_subs_t  *m;

    m = ngx_graph_notify_subs;

    ngx_shmtx_lock(&m->shpool->mutex);

    ngx_memcpy(s->shm->id, s->id, s->id_len);
    s->shm->id[s->id_len] = '\0';
    s->shm->expires = s->id_len ? s->expires : 0;
    s->shm->expires_ms = s->id_len ? s->expires_ms : 0;
    s->shm->notified = s->notified;

    if (s->renewed_ms && s->expires_ms > s->renewed_ms) {
        s->shm->lifetime_ms = s->expires_ms - s->renewed_ms;
    }

    ngx_shmtx_unlock(&m->shpool->mutex);
}


/* backfill: call records of a gap, fetched unless written already */

static void
ngx_graph_notify_backfill_request(ngx_graph_notify_subs_t *m,
    ngx_graph_notify_sub_t *s, time_t from)
{
    ngx_uint_t                     i;
    ngx_graph_notify_backfill_t   *b, **bp;

    bp = m->backfills.elts;
    b = NULL;

    for (i = 0; i < m->backfills.nelts; i++) {
        if (bp[i]->task.tenant->len == s->conf->tenant.len
            && ngx_strncasecmp(bp[i]->task.tenant->data, s->conf->tenant.data,
                               s->conf->tenant.len) == 0)
        {
            b = bp[i];
            break;
        }
    }

    if (b == NULL) {
        b = ngx_pcalloc(m->cycle->pool, sizeof(ngx_graph_notify_backfill_t));
        if (b == NULL) {
            return;
        }

        bp = ngx_array_push(&m->backfills);
        if (bp == NULL) {
            return;
        }

        *bp = b;

        ngx_graph_notify_task_init(m, &b->task, &s->conf->tenant,
                                   ngx_graph_notify_backfill_start);
    }

    /* synthetic notifications name the subscription that had the gap */

    b->subscription.data = s->id;
    b->subscription.len = s->id_len;

    if (b->wanted == 0 || from < b->wanted) {
        b->wanted = from;
    }

    if (b->next.len == 0) {
        ngx_graph_notify_task_schedule(&b->task, 0);
    }
}


static void
ngx_graph_notify_backfill_start(ngx_graph_notify_task_t *task,
    ngx_str_t *bearer)
{
    time_t                        from, floor;
    ngx_str_t                     url;
    ngx_uint_t                    first;
    ngx_graph_notify_subs_t      *m;
    ngx_graph_notify_backfill_t  *b;
    u_char                        f[sizeof("1970-01-01T00:00:00Z")];
    u_char                        t[sizeof("1970-01-01T00:00:00Z")];

    m = ngx_graph_notify_subs;
    b = (ngx_graph_notify_backfill_t *) task;

    first = (b->next.len == 0);

    if (first) {
        if (b->wanted == 0) {
            ngx_graph_notify_task_done(task);
            return;
        }

        /*
         * A record appears once its call has ended, with Graph's latency:
         * the window reaches back by the longest call and that latency.
         * Graph keeps call records for 30 days.
         */

        b->to = ngx_time();
        b->from = b->wanted;
        b->wanted = 0;
        b->pages = 0;
        b->found = 0;
        b->listed = 0;

        from = b->from - m->scf->longest_call - m->scf->latency;
        floor = b->to - 30 * 24 * 60 * 60 + 60;

        if (from < floor) {
            from = floor;
        }

        *ngx_graph_notify_sub_time(f, from) = '\0';
        *ngx_graph_notify_sub_time(t, b->to + 1) = '\0';
    }

    /* the first page, or the next page's link */

    if (ngx_graph_notify_task_url(task, &b->next, &url,
                                  "/v1.0/communications/callRecords"
                                  "?$filter=startDateTime%%20ge%%20%s"
                                  "%%20and%%20startDateTime%%20lt%%20%s",
                                  f, t)
        != NGX_OK)
    {
        goto failed;
    }

    if (first) {
        m->sh->backfill_runs++;
        m->sh->backfill_last = b->to;

        ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                      "graph_notify: looking for call records of tenant %V "
                      "started from %s to %s", task->tenant, f, t);
    }

    if (ngx_graph_notify_task_request(task, "GET", &url, NULL,
                                      ngx_graph_notify_backfill_response)
        != NULL)
    {
        return;
    }

failed:

    /* the whole window again, later */

    if (b->wanted == 0 || b->from < b->wanted) {
        b->wanted = b->from;
    }

    ngx_graph_notify_task_retry(task, NULL);
}


static void
ngx_graph_notify_backfill_response(ngx_graph_notify_http_t *req)
{
    json_t                       *root, *value;
    ngx_int_t                     rc;
    ngx_graph_notify_task_t      *task;
    ngx_graph_notify_subs_t      *m;
    ngx_graph_notify_backfill_t  *b;

    task = req->data;
    b = (ngx_graph_notify_backfill_t *) task;
    m = ngx_graph_notify_subs;

    rc = NGX_ERROR;

    if (req->status == 200) {
        root = ngx_graph_notify_sub_json(&req->body);
        value = json_object_get(root, "value");

        if (json_is_array(value)) {
            rc = ngx_graph_notify_backfill_page(b, value);

            if (rc == NGX_OK
                && ngx_graph_notify_task_next(root, &b->next, &b->pages)
                   == NGX_ERROR)
            {
                rc = NGX_ERROR;
            }
        }

        json_decref(root);
    }

    if (rc == NGX_OK) {
        task->attempts = 0;
        ngx_graph_notify_task_done(task);

        if (b->next.len) {
            ngx_graph_notify_task_schedule(task, 0);
            return;
        }

        ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                      "graph_notify: call records of tenant %V: %ui listed, "
                      "%ui not written yet and fetched", task->tenant,
                      b->listed, b->found);

        if (b->wanted) {
            ngx_graph_notify_task_schedule(task, 0);
        }

        return;
    }

    ngx_log_error(NGX_LOG_ERR, m->log, 0,
                  "graph_notify: listing call records of tenant %V failed "
                  "(%l); retrying with backoff (the app needs "
                  "CallRecords.Read.All)", task->tenant, req->status);

    if (b->wanted == 0 || b->from < b->wanted) {
        b->wanted = b->from;
    }

    ngx_graph_notify_task_retry(task, req);
}


static ngx_int_t
ngx_graph_notify_backfill_page(ngx_graph_notify_backfill_t *b, json_t *value)
{
    char                           *dump;
    json_t                         *e, *line;
    size_t                          i, len, k;
    int64_t                         version;
    ngx_int_t                       rc;
    ngx_str_t                       id, resource;
    ngx_uint_t                      n;
    ngx_pool_t                     *pool;
    const char                     *s;
    ngx_graph_notify_subs_t        *m;
    ngx_graph_notify_entry_t       *entries;
    ngx_graph_notify_index_node_t  *node;
    u_char                          ts[sizeof("1970-01-01T00:00:00.000Z")];
    u_char                          rbuf[sizeof("communications/callRecords/")
                                         + 128];

    m = ngx_graph_notify_subs;

    n = json_array_size(value);
    if (n == 0) {
        return NGX_OK;
    }

    pool = ngx_create_pool(4096, m->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    entries = ngx_palloc(pool, n * sizeof(ngx_graph_notify_entry_t));
    if (entries == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    ngx_graph_notify_index_sync();
    (void) ngx_graph_notify_timestamp(ts);

    n = 0;

    json_array_foreach(value, i, e) {
        s = json_string_value(json_object_get(e, "id"));
        version = json_integer_value(json_object_get(e, "version"));

        if (s == NULL) {
            continue;
        }

        len = ngx_strlen(s);

        if (len == 0 || len > 128) {
            continue;
        }

        for (k = 0; k < len; k++) {
            if (!isalnum((u_char) s[k]) && s[k] != '-' && s[k] != '_') {
                break;
            }
        }

        if (k != len) {
            continue;
        }

        b->listed++;
        m->sh->backfill_listed++;

        id.data = (u_char *) s;
        id.len = len;

        node = ngx_graph_notify_index_get(&id);

        if (node) {
            if (node->active || (version > 0 && node->version >= version)) {
                ngx_graph_notify_index_release(node);
                continue;
            }

            ngx_graph_notify_index_release(node);
        }

        /* as Graph would have notified it; the Graph client does the rest */

        resource.data = rbuf;
        resource.len = ngx_sprintf(rbuf, "communications/callRecords/%s", s)
                       - rbuf;

        line = json_pack("{s:s,s:s,s:s%,s:s,s:s%,s:{s:s,s:s%,s:s},s:s%,"
                         "s:b}",
                         "receivedAt", ts,
                         "kind", "basic",
                         "subscriptionId", b->subscription.len
                                           ? (char *) b->subscription.data
                                           : "backfill",
                         b->subscription.len ? b->subscription.len : 8,
                         "changeType", "updated",
                         "resource", resource.data, resource.len,
                         "resourceData",
                             "@odata.type", "#Microsoft.Graph.callRecord",
                             "@odata.id", resource.data, resource.len,
                             "id", s,
                         "tenantId", b->task.tenant->data,
                         b->task.tenant->len,
                         "backfill", 1);

        if (line == NULL) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        dump = json_dumps(line, JSON_COMPACT);
        json_decref(line);

        if (dump == NULL) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        entries[n].line.len = ngx_strlen(dump);
        entries[n].line.data = ngx_pnalloc(pool, entries[n].line.len);

        if (entries[n].line.data == NULL) {
            free(dump);
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        ngx_memcpy(entries[n].line.data, dump, entries[n].line.len);
        free(dump);

        entries[n].record.data = ngx_pnalloc(pool, len);
        if (entries[n].record.data == NULL) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        ngx_memcpy(entries[n].record.data, s, len);
        entries[n].record.len = len;
        entries[n].tenant = *b->task.tenant;
        entries[n].kind = NGX_GRAPH_NOTIFY_KIND_CALL_RECORD;
        n++;
    }

    rc = NGX_OK;

    if (n) {
        /*
         * Through the queue, de-duplicated like the rest; not journaled:
         * they live in the zone, which outlives a helper that dies.
         */

        rc = ngx_graph_notify_queue_push(m->queue, entries, n, NULL);

        if (rc == NGX_OK) {
            b->found += n;
            m->sh->backfill_found += n;
            ngx_graph_notify_helper_kick();

        } else {
            ngx_log_error(NGX_LOG_WARN, m->log, 0,
                          "graph_notify: the queue is full, looking for call "
                          "records again later");
        }
    }

    ngx_destroy_pool(pool);

    return rc;
}


/* the helper sees every item it takes from the queue */

static ngx_graph_notify_sub_t *
ngx_graph_notify_sub_find(ngx_str_t *id)
{
    ngx_uint_t                k;
    ngx_graph_notify_sub_t   *s;
    ngx_graph_notify_subs_t  *m;

    m = ngx_graph_notify_subs;
    s = m->subs.elts;

    for (k = 0; k < m->subs.nelts; k++) {
        if (s[k].id_len == id->len
            && ngx_strncasecmp(s[k].id, id->data, id->len) == 0)
        {
            return &s[k];
        }
    }

    return NULL;
}


void
ngx_graph_notify_subscription_item(ngx_str_t *line)
{
    u_char                   *p, *last;
    json_t                   *item;
    ngx_str_t                 id, event;
    ngx_graph_notify_sub_t   *s;
    ngx_graph_notify_subs_t  *m;

    static const char  key[] = "\"subscriptionId\":\"";

    m = ngx_graph_notify_subs;

    if (m == NULL) {
        return;
    }

    last = line->data + line->len;

    p = ngx_strlcasestrn(line->data, last, (u_char *) key, sizeof(key) - 2);
    if (p == NULL) {
        return;
    }

    id.data = p + sizeof(key) - 1;

    for (p = id.data; p < last && *p != '"'; p++) { /* void */ }

    id.len = p - id.data;

    if (ngx_strlcasestrn(line->data, last, (u_char *) "\"kind\":\"lifecycle\"",
                         sizeof("\"kind\":\"lifecycle\"") - 2) == NULL)
    {
        if (!m->locked
            || ngx_strlcasestrn(line->data, last,
                                (u_char *) "\"backfill\":true",
                                sizeof("\"backfill\":true") - 2) != NULL)
        {
            return;
        }

        s = ngx_graph_notify_sub_find(&id);

        if (s) {
            s->notified = ngx_time();
            s->shm->notified = s->notified;
        }

        return;
    }

    item = json_loadb((char *) line->data, line->len, 0, NULL);

    event.data = (u_char *) json_string_value(json_object_get(item,
                                                      "lifecycleEvent"));
    event.len = json_string_length(json_object_get(item, "lifecycleEvent"));

    if (event.data) {
        if (m->locked) {
            ngx_graph_notify_sub_event(m, &id, &event);

        } else {
            ngx_graph_notify_sub_hand_over(m, &id, &event);
        }
    }

    json_decref(item);
}


static void
ngx_graph_notify_sub_event(ngx_graph_notify_subs_t *m, ngx_str_t *id,
    ngx_str_t *event)
{
    ngx_int_t                op;
    ngx_graph_notify_sub_t  *s;

    s = ngx_graph_notify_sub_find(id);

    if (s == NULL) {
        ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                      "graph_notify: lifecycle event \"%V\" for "
                      "subscription %V, which is not declared", event, id);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                  "graph_notify: lifecycle event \"%V\" for subscription "
                  "%V to \"%V\" of tenant %V", event, id, &s->conf->resource,
                  &s->conf->tenant);

#define ngx_graph_notify_is(name)                                             \
    (event->len == sizeof(name) - 1                                           \
     && ngx_strncmp(event->data, name, sizeof(name) - 1) == 0)

    if (ngx_graph_notify_is("reauthorizationRequired")) {
        /* renewing reauthorizes too; POST .../reauthorize if refused */
        s->reauthorize = 1;
        op = NGX_GRAPH_NOTIFY_OP_RENEW;

    } else if (ngx_graph_notify_is("subscriptionRemoved")) {
        op = NGX_GRAPH_NOTIFY_OP_CREATE;

    } else {
        op = -1;

        if (ngx_graph_notify_is("missed") && s->conf->call_records) {
            ngx_graph_notify_backfill_request(m, s,
                                              s->renewed ? s->renewed
                                                         : ngx_time());
        }
    }

#undef ngx_graph_notify_is

    if (op < 0) {
        return;
    }

    if (s->task.running) {
        s->again = op + 1;
        return;
    }

    if (op == NGX_GRAPH_NOTIFY_OP_CREATE) {
        if (s->task.queued) {
            ngx_queue_remove(&s->task.link);
            s->task.queued = 0;
        }

        ngx_graph_notify_sub_recreate(s, "was removed (lifecycle event)");
        return;
    }

    s->op = op;

    if (s->task.timer.timer_set) {
        ngx_del_timer(&s->task.timer);
    }

    ngx_graph_notify_task_schedule(&s->task, 0);
}


/*
 * While two helpers overlap (a reload, a binary upgrade), a lifecycle
 * event may reach the one that waits for the lock: it is handed to the one
 * that holds it through a file in their common directory.
 */

static void
ngx_graph_notify_sub_hand_over(ngx_graph_notify_subs_t *m, ngx_str_t *id,
    ngx_str_t *event)
{
    u_char    *p;
    ssize_t    n;
    ngx_fd_t   fd;
    u_char     buf[NGX_GRAPH_NOTIFY_SUB_ID + 64];

    if (id->len == 0 || id->len >= NGX_GRAPH_NOTIFY_SUB_ID
        || event->len == 0 || event->len > 48
        || ngx_strlchr(id->data, id->data + id->len, ' ') != NULL
        || ngx_strlchr(event->data, event->data + event->len, LF) != NULL)
    {
        return;
    }

    p = ngx_sprintf(buf, "%V %V\n", id, event);

    fd = ngx_open_file(m->events_name.data, NGX_FILE_APPEND,
                       NGX_FILE_CREATE_OR_OPEN, NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, m->log, ngx_errno,
                      "graph_notify: " ngx_open_file_n " \"%V\" failed, "
                      "lifecycle event \"%V\" for subscription %V is not "
                      "acted on", &m->events_name, event, id);
        return;
    }

    n = write(fd, buf, p - buf);

    (void) ngx_close_file(fd);

    ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                  "graph_notify: lifecycle event \"%V\" for subscription %V "
                  "handed to the helper that acts on subscriptions%s",
                  event, id, n == p - buf ? "" : " failed");
}


static void
ngx_graph_notify_sub_take_over(ngx_graph_notify_subs_t *m)
{
    u_char           *p, *last, *sp, *nl;
    ssize_t           n;
    ngx_str_t         id, event;
    ngx_file_t        file;
    ngx_file_info_t   fi;
    u_char            tmp[NGX_MAX_PATH];
    u_char            buf[16384];

    if (ngx_file_info(m->events_name.data, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) == 0)
    {
        return;
    }

    /* taken whole: a helper that hands over later starts a new file */

    ngx_snprintf(tmp, sizeof(tmp), "%V.taken%Z", &m->events_name);

    if (ngx_rename_file(m->events_name.data, tmp) == NGX_FILE_ERROR) {
        return;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.log = m->log;
    file.name.data = tmp;
    file.name.len = ngx_strlen(tmp);
    file.fd = ngx_open_file(tmp, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        return;
    }

    n = ngx_read_file(&file, buf, sizeof(buf), 0);

    (void) ngx_close_file(file.fd);
    (void) ngx_delete_file(tmp);

    if (n <= 0) {
        return;
    }

    p = buf;
    last = buf + n;

    while (p < last) {
        nl = ngx_strlchr(p, last, LF);

        if (nl == NULL) {
            break;
        }

        sp = ngx_strlchr(p, nl, ' ');

        if (sp) {
            id.data = p;
            id.len = sp - p;
            event.data = sp + 1;
            event.len = nl - sp - 1;

            ngx_graph_notify_sub_event(m, &id, &event);
        }

        p = nl + 1;
    }
}


ngx_int_t
ngx_graph_notify_subscription_rotate(ngx_str_t *subscription_id,
    ngx_str_t *certificate, ngx_str_t *certificate_id)
{
    ngx_graph_notify_sub_t   *s;
    ngx_graph_notify_subs_t  *m;

    m = ngx_graph_notify_subs;

    if (m == NULL || !m->locked) {
        return NGX_DECLINED;
    }

    s = ngx_graph_notify_sub_find(subscription_id);

    if (s == NULL) {
        return NGX_DECLINED;
    }

    s->certificate.data = ngx_pstrdup(m->cycle->pool, certificate);
    s->certificate_id.data = ngx_pstrdup(m->cycle->pool, certificate_id);

    if (s->certificate.data == NULL || s->certificate_id.data == NULL) {
        return NGX_ERROR;
    }

    s->certificate.len = certificate->len;
    s->certificate_id.len = certificate_id->len;

    if (s->task.running) {
        s->again = NGX_GRAPH_NOTIFY_OP_ROTATE + 1;
        return NGX_OK;
    }

    s->op = NGX_GRAPH_NOTIFY_OP_ROTATE;

    if (s->task.timer.timer_set) {
        ngx_del_timer(&s->task.timer);
    }

    ngx_graph_notify_task_schedule(&s->task, 0);

    return NGX_OK;
}


/* helpers */

static void
ngx_graph_notify_sub_error(ngx_graph_notify_http_t *req, u_char *code,
    u_char *message)
{
    json_t      *root, *err;
    const char  *c, *msg;

    code[0] = '\0';
    message[0] = '\0';

    if (req->status == 0) {
        ngx_graph_notify_sub_copy(code, NGX_GRAPH_NOTIFY_SUB_CODE,
                                  "transport", 9);
        ngx_graph_notify_sub_copy(message, NGX_GRAPH_NOTIFY_SUB_MESSAGE,
                                  req->error, ngx_strlen(req->error));
        return;
    }

    root = ngx_graph_notify_sub_json(&req->body);
    err = json_object_get(root, "error");
    c = json_string_value(json_object_get(err, "code"));
    msg = json_string_value(json_object_get(err, "message"));

    if (c) {
        ngx_graph_notify_sub_copy(code, NGX_GRAPH_NOTIFY_SUB_CODE, c,
                                  ngx_strlen(c));
    }

    if (msg) {
        ngx_graph_notify_sub_copy(message, NGX_GRAPH_NOTIFY_SUB_MESSAGE, msg,
                                  ngx_strlen(msg));
    }

    json_decref(root);
}


static ngx_uint_t
ngx_graph_notify_sub_valid_id(const char *id, size_t len)
{
    size_t  i;

    /* an id goes into URLs, the state file and the status page */

    if (len == 0 || len >= NGX_GRAPH_NOTIFY_SUB_ID) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!isalnum((u_char) id[i]) && id[i] != '-' && id[i] != '_') {
            return 0;
        }
    }

    return 1;
}


static void
ngx_graph_notify_sub_copy(u_char *dst, size_t size, const char *src,
    size_t len)
{
    size_t  i;
    u_char  c;

    /* for JSON, Prometheus labels and log lines: printable, no quotes */

    len = ngx_min(len, size - 1);

    for (i = 0; i < len; i++) {
        c = (u_char) src[i];
        dst[i] = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? ' ' : c;
    }

    dst[len] = '\0';
}


static int64_t
ngx_graph_notify_sub_parse_time(const char *s)
{
    int64_t      y, mo, d, h, mi, sec, era, yoe, doy, days, off, oh, om, ms;
    int64_t      unit;
    const char  *p;

    /* ISO 8601 as Graph writes it, fractions and any UTC offset */

    if (s == NULL || ngx_strlen(s) < 19 || s[4] != '-' || s[7] != '-'
        || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
    {
        return 0;
    }

    y = ngx_atoi((u_char *) s, 4);
    mo = ngx_atoi((u_char *) s + 5, 2);
    d = ngx_atoi((u_char *) s + 8, 2);
    h = ngx_atoi((u_char *) s + 11, 2);
    mi = ngx_atoi((u_char *) s + 14, 2);
    sec = ngx_atoi((u_char *) s + 17, 2);

    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0
        || mi < 0 || sec < 0)
    {
        return 0;
    }

    p = s + 19;
    ms = 0;

    if (*p == '.') {
        unit = 100;

        for (p++; *p >= '0' && *p <= '9'; p++) {
            ms += (*p - '0') * unit;
            unit /= 10;
        }
    }

    off = 0;

    if ((*p == '+' || *p == '-') && ngx_strlen(p) >= 6) {
        oh = ngx_atoi((u_char *) p + 1, 2);
        om = ngx_atoi((u_char *) p + 4, 2);

        if (oh >= 0 && om >= 0) {
            off = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        }
    }

    y -= (mo <= 2);
    era = y / 400;
    yoe = y - era * 400;
    doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;

    return (days * 86400 + h * 3600 + mi * 60 + sec - off) * 1000 + ms;
}


static int64_t
ngx_graph_notify_sub_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + tp->msec;
}


static u_char *
ngx_graph_notify_sub_time(u_char *buf, time_t t)
{
    ngx_tm_t  tm;

    ngx_gmtime(t, &tm);

    return ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
}


static json_t *
ngx_graph_notify_sub_json(ngx_str_t *body)
{
    if (body->len == 0) {
        return NULL;
    }

    return json_loadb((char *) body->data, body->len, 0, NULL);
}


static void
ngx_graph_notify_sub_cleanup(void *data)
{
    ngx_graph_notify_subs_t *m = data;

    ngx_uint_t                     i;
    ngx_queue_t                   *q;
    ngx_graph_notify_task_t       *task;
    ngx_graph_notify_sub_list_t   *l;
    ngx_graph_notify_backfill_t  **b;

    /* requests in flight when the process exits */

    for (q = ngx_queue_head(&m->tasks);
         q != ngx_queue_sentinel(&m->tasks);
         q = ngx_queue_next(q))
    {
        task = ngx_queue_data(q, ngx_graph_notify_task_t, all);

        if (task->pool) {
            ngx_destroy_pool(task->pool);
            task->pool = NULL;
        }
    }

    l = m->lists.elts;

    for (i = 0; i < m->lists.nelts; i++) {
        json_decref(l[i].items);

        if (l[i].next.len) {
            ngx_free(l[i].next.data);
        }
    }

    b = m->backfills.elts;

    for (i = 0; i < m->backfills.nelts; i++) {
        if (b[i]->next.len) {
            ngx_free(b[i]->next.data);
        }
    }

    if (m->lock_fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(m->lock_fd);
    }

    ngx_graph_notify_subs = NULL;
}


/* the status page, in the workers */

static const char *
ngx_graph_notify_sub_verdict(ngx_graph_notify_sub_shm_t *e, int64_t now)
{
    if (e->result == NGX_GRAPH_NOTIFY_SUB_FAILED) {
        return "failing";
    }

    if (e->id[0] == '\0' || e->expires_ms <= now) {
        return "missing";
    }

    /*
     * Renewals run at 50-75 % of the lifetime: under a fifth left means
     * that they do not succeed (a twentieth is the margin for timers).
     */

    if (e->lifetime_ms && (e->expires_ms - now) * 5 < e->lifetime_ms) {
        return "expiring";
    }

    return "healthy";
}


size_t
ngx_graph_notify_subscription_status_size(ngx_graph_notify_main_conf_t *gmcf)
{
    if (gmcf->subscriptions == NULL || gmcf->subscriptions->zone == NULL) {
        return 0;
    }

    /* the fixed lines, then per subscription its JSON or metric lines */
    return 4096 + gmcf->subscriptions->subs.nelts * 2560;
}


u_char *
ngx_graph_notify_subscription_status_json(ngx_graph_notify_main_conf_t *gmcf,
    u_char *p, u_char *last)
{
    time_t                        now;
    int64_t                       now_ms;
    ngx_uint_t                    i;
    ngx_slab_pool_t              *shpool;
    ngx_graph_notify_sub_shm_t   *e;
    ngx_graph_notify_subs_shm_t  *sh;
    u_char                        at[sizeof("1970-01-01T00:00:00Z")];

    if (gmcf->subscriptions == NULL || gmcf->subscriptions->zone == NULL) {
        return p;
    }

    shpool = (ngx_slab_pool_t *) gmcf->subscriptions->zone->shm.addr;
    sh = shpool->data;
    now = ngx_time();
    now_ms = ngx_graph_notify_sub_now();

    ngx_shmtx_lock(&shpool->mutex);

    p = ngx_slprintf(p, last,
                     ",\"subscriptions\":{\"renewer\":%P,"
                     "\"heartbeatAge\":%T,\"reconciled\":%ui,"
                     "\"backfill\":{\"runs\":%ui,\"listed\":%ui,"
                     "\"found\":%ui,\"lastAge\":%T},\"items\":[",
                     sh->renewer,
                     sh->heartbeat ? now - sh->heartbeat : -1,
                     sh->reconciled, sh->backfill_runs, sh->backfill_listed,
                     sh->backfill_found,
                     sh->backfill_last ? now - sh->backfill_last : -1);

    for (i = 0; i < sh->n; i++) {
        e = &sh->sub[i];

        if (e->renewed) {
            *ngx_graph_notify_sub_time(at, e->renewed) = '\0';
        }

        p = ngx_slprintf(p, last,
                         "%s{\"id\":\"%s\",\"resource\":\"%s\","
                         "\"tenant\":\"%s\",\"expiresIn\":%T,"
                         "\"lifetime\":%T,\"renewals\":%ui,"
                         "\"recreated\":%ui,"
                         "\"lastRenewal\":{\"at\":\"%s\",\"result\":\"%s\","
                         "\"status\":%ui,\"code\":\"%s\","
                         "\"message\":\"%s\"},"
                         "\"lastNotificationAge\":%T,\"verdict\":\"%s\"}",
                         i ? "," : "", e->id, e->resource, e->tenant,
                         e->expires ? e->expires - now : -1,
                         (time_t) (e->lifetime_ms / 1000), e->renewals,
                         e->recreated,
                         e->renewed ? at : (u_char *) "",
                         e->result == NGX_GRAPH_NOTIFY_SUB_OK ? "ok"
                         : e->result == NGX_GRAPH_NOTIFY_SUB_FAILED
                           ? "failed" : "none",
                         e->status, e->code, e->message,
                         e->notified ? now - e->notified : -1,
                         ngx_graph_notify_sub_verdict(e, now_ms));
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return ngx_slprintf(p, last, "]}");
}


u_char *
ngx_graph_notify_subscription_status_prometheus(
    ngx_graph_notify_main_conf_t *gmcf, u_char *p, u_char *last)
{
    time_t                        now;
    int64_t                       now_ms;
    ngx_uint_t                    i, k;
    const char                   *verdict;
    ngx_slab_pool_t              *shpool;
    ngx_graph_notify_sub_shm_t   *e;
    ngx_graph_notify_subs_shm_t  *sh;

    static const char  *help[] = {
        "graph_notify_subscription_expiry_seconds Seconds until the "
            "subscription expires, -1 when it does not exist.",
        "graph_notify_subscription_notification_age_seconds Seconds since "
            "its last notification, -1 before the first.",
        "graph_notify_subscription_up 1 while the subscription exists and "
            "its renewals succeed.",
        "graph_notify_subscription_verdict The verdict, one of healthy, "
            "expiring, failing, missing.",
        "graph_notify_subscription_renewals_total Renewals that succeeded."
    };

    static const char  *type[] = {
        "gauge", "gauge", "gauge", "gauge", "counter"
    };

    if (gmcf->subscriptions == NULL || gmcf->subscriptions->zone == NULL) {
        return p;
    }

    shpool = (ngx_slab_pool_t *) gmcf->subscriptions->zone->shm.addr;
    sh = shpool->data;
    now = ngx_time();
    now_ms = ngx_graph_notify_sub_now();

    ngx_shmtx_lock(&shpool->mutex);

    for (k = 0; k < 5; k++) {
        p = ngx_slprintf(p, last, "# HELP %s\n# TYPE %*s %s\n", help[k],
                         (size_t) (ngx_strchr(help[k], ' ') - help[k]),
                         help[k], type[k]);

        for (i = 0; i < sh->n; i++) {
            e = &sh->sub[i];
            verdict = ngx_graph_notify_sub_verdict(e, now_ms);

            p = ngx_slprintf(p, last, "%*s{resource=\"%s\",tenant=\"%s\","
                             "id=\"%s\"",
                             (size_t) (ngx_strchr(help[k], ' ') - help[k]),
                             help[k], e->resource, e->tenant, e->id);

            switch (k) {

            case 0:
                p = ngx_slprintf(p, last, "} %T\n",
                                 e->expires ? e->expires - now : -1);
                break;

            case 1:
                p = ngx_slprintf(p, last, "} %T\n",
                                 e->notified ? now - e->notified : -1);
                break;

            case 2:
                p = ngx_slprintf(p, last, "} %d\n",
                                 verdict[0] == 'h' || verdict[0] == 'e');
                break;

            case 3:
                p = ngx_slprintf(p, last, ",verdict=\"%s\"} 1\n", verdict);
                break;

            default:
                p = ngx_slprintf(p, last, "} %ui\n", e->renewals);
                break;
            }
        }
    }

    p = ngx_slprintf(p, last,
                     "# HELP graph_notify_backfill_runs_total Call-record "
                     "backfills run.\n"
                     "# TYPE graph_notify_backfill_runs_total counter\n"
                     "graph_notify_backfill_runs_total %ui\n"
                     "# HELP graph_notify_backfill_records_total Call "
                     "records found by backfill and fetched.\n"
                     "# TYPE graph_notify_backfill_records_total counter\n"
                     "graph_notify_backfill_records_total %ui\n",
                     sh->backfill_runs, sh->backfill_found);

    ngx_shmtx_unlock(&shpool->mutex);

    return p;
}
