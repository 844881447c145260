
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_subscription.h"
#include "ngx_graph_notify_subscription_state.h"
#include "ngx_graph_notify_subscription_task.h"
#include "ngx_graph_notify_subscription_reconcile.h"
#include "ngx_graph_notify_subscription_renew.h"
#include "ngx_graph_notify_subscription_events.h"
#include "ngx_graph_notify_subscription_backfill.h"

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
 *
 * This file: the helper's start, its lock and heartbeat, and what the
 * other files share.  The directives and their "nginx -t" checks are in
 * ngx_graph_notify_subscription_conf.c, the state file in _state.c, the
 * requests to Graph in _task.c, listing, adopting, creating and pruning in
 * _reconcile.c, creating, renewing and reauthorizing one subscription in
 * _renew.c, lifecycle events in _events.c, the call records of a gap in
 * _backfill.c, the status page in _status.c.
 */


#define NGX_GRAPH_NOTIFY_SUB_STATE       "subscriptions.state"
#define NGX_GRAPH_NOTIFY_SUB_LOCK        "subscriptions.lock"
#define NGX_GRAPH_NOTIFY_SUB_EVENTS      "subscriptions.events"

#define NGX_GRAPH_NOTIFY_SUB_LOCK_RETRY  1000


static ngx_int_t ngx_graph_notify_sub_file(ngx_graph_notify_subs_t *m,
    char *name, ngx_str_t *file);
static ngx_int_t ngx_graph_notify_sub_lock(ngx_graph_notify_subs_t *m);
static void ngx_graph_notify_sub_begin(ngx_graph_notify_subs_t *m);
static void ngx_graph_notify_sub_tick(ngx_event_t *ev);
static void ngx_graph_notify_sub_cleanup(void *data);


ngx_graph_notify_subs_t  *ngx_graph_notify_subs;


ngx_int_t
ngx_graph_notify_subscription_init(ngx_cycle_t *cycle,
    ngx_graph_notify_main_conf_t *gmcf)
{
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

    /* NUL-terminated, for open() and rename() */

    if (ngx_graph_notify_sub_file(m, NGX_GRAPH_NOTIFY_SUB_STATE,
                                  &m->state_name)
        != NGX_OK
        || ngx_graph_notify_sub_file(m, NGX_GRAPH_NOTIFY_SUB_LOCK,
                                     &m->lock_name)
           != NGX_OK
        || ngx_graph_notify_sub_file(m, NGX_GRAPH_NOTIFY_SUB_EVENTS,
                                     &m->events_name)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_array_init(&m->subs, cycle->pool, scf->subs.nelts,
                       sizeof(ngx_graph_notify_sub_t))
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

    if (ngx_graph_notify_sub_state_init(m) != NGX_OK) {
        return NGX_ERROR;
    }

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


/* a file of the helper's directory */

static ngx_int_t
ngx_graph_notify_sub_file(ngx_graph_notify_subs_t *m, char *name,
    ngx_str_t *file)
{
    u_char     *p;
    size_t      len;
    ngx_str_t  *dir;

    dir = &m->gmcf->path->name;
    len = dir->len + sizeof("/") + ngx_strlen(name);

    file->data = ngx_pnalloc(m->cycle->pool, len);
    if (file->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(file->data, "%V/%s%Z", dir, name);
    file->len = p - file->data - 1;

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
    time_t                   heartbeat, now, from;
    ngx_uint_t               i;
    ngx_graph_notify_sub_t  *s;

    now = ngx_time();
    heartbeat = 0;

    ngx_graph_notify_sub_load(m, &heartbeat);

    ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                  "graph_notify: reconciling %ui subscription(s) with Graph",
                  m->subs.nelts);

    m->sh->renewer = ngx_pid;

    if (ngx_graph_notify_reconcile_start(m) != NGX_OK) {
        return;
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
        s = m->subs.elts;

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
ngx_graph_notify_sub_cleanup(void *data)
{
    ngx_graph_notify_subs_t *m = data;

    ngx_queue_t              *q;
    ngx_graph_notify_task_t  *task;

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

    ngx_graph_notify_reconcile_cleanup(m);
    ngx_graph_notify_backfill_cleanup(m);
    ngx_graph_notify_sub_state_cleanup(m);

    if (m->lock_fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(m->lock_fd);
    }

    ngx_graph_notify_subs = NULL;
}


/* the next item of a list (items separated by "sep"); NGX_DONE at its end */

ngx_int_t
ngx_graph_notify_sub_next(u_char **pos, u_char *last, u_char sep,
    ngx_str_t *item)
{
    u_char  *p;

    p = *pos;

    if (p >= last) {
        return NGX_DONE;
    }

    item->data = p;

    while (p < last && *p != sep) {
        p++;
    }

    item->len = p - item->data;
    *pos = p + 1;

    return NGX_OK;
}


ngx_graph_notify_sub_t *
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


ngx_uint_t
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


void
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


int64_t
ngx_graph_notify_sub_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + tp->msec;
}


u_char *
ngx_graph_notify_sub_time(u_char *buf, time_t t)
{
    ngx_tm_t  tm;

    ngx_gmtime(t, &tm);

    return ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
}
