
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"
#include "ngx_graph_notify_commit.h"


/*
 * Call records, fetched whole: the record with its sessions and their
 * segments, following "sessions@odata.nextLink" to the last page, written
 * once per version.
 *
 * Notifications of one record are grouped: all that wait when a fetch
 * starts are answered by it; those that come during it cause one more
 * fetch afterwards, since the record may have changed meanwhile.
 *
 * Requests are paced per tenant (a rate budget, and pauses that honour
 * Retry-After), capped in number, and spaced per record, after Graph's
 * throttling limits for call records: 1,500 requests per 20 s per app and
 * tenant, 40 per 20 s per record.
 *
 * No tenant stalls the others.  The helper takes every call-record item
 * off the queue and keeps a small reference to it (the item itself stays
 * in the zone, owned and leased by the helper); a tenant works on a
 * bounded number of records at once (fewer while it has no token or is
 * paused) and keeps the rest of its items, still as references, in a
 * backlog of its own, read back from the zone when their turn comes.  So
 * a tenant that cannot get a token holds only its own items, and the
 * helper never stops taking other items because of it.  Every waiting
 * item is dropped at the record horizon, whatever it waits for.
 */


/* items held in all, references included; the zone bounds them anyway */
#define NGX_GRAPH_NOTIFY_HELD_MAX        262144
/* records a tenant works on at once; while it has no token or is paused */
#define NGX_GRAPH_NOTIFY_TENANT_RECORDS  64
#define NGX_GRAPH_NOTIFY_STUCK_RECORDS   4
/* backlog items read back per tenant and turn of the loop */
#define NGX_GRAPH_NOTIFY_PROMOTE         64
/* fetches again after "updated" that return a version written already */
#define NGX_GRAPH_NOTIFY_STALE_MAX       2
/* a tenant without work is forgotten after this long, seconds */
#define NGX_GRAPH_NOTIFY_TENANT_IDLE     600
/* seconds between two log lines of drops for the same reason */
#define NGX_GRAPH_NOTIFY_DROP_LOG        60
#define NGX_GRAPH_NOTIFY_START_MIN       1000
#define NGX_GRAPH_NOTIFY_START_MAX       60000
#define NGX_GRAPH_NOTIFY_RECORD_SPACING  500
#define NGX_GRAPH_NOTIFY_BACKOFF_MIN     1000
#define NGX_GRAPH_NOTIFY_BACKOFF_MAX     (5 * 60 * 1000)

#define NGX_GRAPH_NOTIFY_EXPAND          "?$expand=sessions($expand=segments)"


typedef enum {
    NGX_GRAPH_NOTIFY_IDLE = 0,
    NGX_GRAPH_NOTIFY_QUEUED,
    NGX_GRAPH_NOTIFY_RUNNING,
    NGX_GRAPH_NOTIFY_DELAYED,
    NGX_GRAPH_NOTIFY_WRITING
} ngx_graph_notify_state_e;


/* records written to the output, waiting for the sync of their lines */
typedef struct {
    ngx_graph_notify_commit_t       commit;
    ngx_queue_t                     batch;
} ngx_graph_notify_gwritten_t;


typedef struct {
    ngx_str_node_t                  sn;
    ngx_queue_t                     link;
    ngx_queue_t                     ready;
    ngx_queue_t                     backlog;      /* oldest first */
    ngx_uint_t                      backlogged;
    ngx_uint_t                      records;
    ngx_uint_t                      running;
    ngx_msec_t                      paused_until;
    ngx_uint_t                      paused;
    ngx_uint_t                      throttles;
    ngx_msec_t                      refilled;
    ngx_uint_t                      budget;
    time_t                          active;
    unsigned                        no_token:1;
} ngx_graph_notify_tenant_t;


typedef struct {
    ngx_graph_notify_index_node_t  *node;
    ngx_graph_notify_tenant_t      *tenant;
    ngx_queue_t                     jobs;
    ngx_queue_t                     answering;
    ngx_queue_t                     link;
    ngx_queue_t                     all;
    ngx_event_t                     timer;
    ngx_pool_t                     *pool;
    ngx_graph_notify_http_t        *req;
    json_t                         *record;
    json_t                         *item;         /* newest notification */
    ngx_str_t                       line;
    int64_t                         version;
    ngx_uint_t                      answers;
    ngx_str_t                       next;
    ngx_str_t                       bearer;
    ngx_graph_notify_state_e        state;
    ngx_uint_t                      attempts;
    ngx_uint_t                      unauthorized;
    ngx_uint_t                      pages;
    ngx_uint_t                      last_status;
    ngx_graph_notify_record_drop_e  last_reason;
    const char                     *last_what;
    ngx_uint_t                      stale;
    time_t                          first_seen;
    ngx_msec_t                      not_before;
    uint64_t                        fetch_seq;
} ngx_graph_notify_record_t;


/* a call-record item held: a reference to the queued item, no copy */
typedef struct {
    ngx_queue_t                     queue;
    ngx_graph_notify_job_t          job;
    time_t                          received;
    unsigned                        created:1;
    unsigned                        updated:1;
} ngx_graph_notify_rjob_t;


typedef struct {
    ngx_uint_t                      records;
    ngx_uint_t                      items;
    time_t                          logged;
} ngx_graph_notify_drop_log_t;


typedef struct {
    ngx_graph_notify_main_conf_t   *gmcf;
    ngx_graph_notify_queue_t       *queue;
    ngx_graph_notify_stats_t       *stats;
    ngx_log_t                      *log;

    ngx_rbtree_t                    tenant_tree;
    ngx_rbtree_node_t               tenant_sentinel;
    ngx_queue_t                     tenants;
    ngx_uint_t                      ntenants;
    ngx_uint_t                      max_tenants;
    ngx_uint_t                      tenant_running;
    time_t                          tenants_full_logged;

    ngx_queue_t                     all;
    ngx_queue_t                     writing;
    ngx_uint_t                      running;
    ngx_uint_t                      held;
    ngx_uint_t                      records;
    ngx_uint_t                      waiting;
    ngx_uint_t                      backlog;

    time_t                          maintained;
    time_t                          swept;

    /* the client starts once its parts do; retried until then */
    ngx_cycle_t                    *cycle;
    ngx_uint_t                      started;
    ngx_msec_t                      start_delay;
    ngx_event_t                     start;

    ngx_graph_notify_drop_log_t     drops[NGX_GRAPH_NOTIFY_RECORD_N];

    ngx_event_t                     pump;
    ngx_event_t                     flush;
    ngx_connection_t                dummy;
} ngx_graph_notify_graph_t;


static void ngx_graph_notify_graph_start(ngx_graph_notify_graph_t *g);
static void ngx_graph_notify_graph_start_handler(ngx_event_t *ev);
static ngx_int_t ngx_graph_notify_graph_route(ngx_graph_notify_rjob_t *rj,
    ngx_graph_notify_job_t *job, ngx_uint_t promoted);
static void ngx_graph_notify_graph_backlog(ngx_graph_notify_tenant_t *t,
    ngx_graph_notify_rjob_t *rj, ngx_uint_t head);
static void ngx_graph_notify_graph_promote(ngx_graph_notify_tenant_t *t);
static ngx_uint_t ngx_graph_notify_graph_tenant_cap(
    ngx_graph_notify_tenant_t *t);
static ngx_uint_t ngx_graph_notify_graph_tenant_valid(ngx_str_t *id);
static ngx_graph_notify_tenant_t *ngx_graph_notify_graph_tenant(
    ngx_str_t *id, ngx_uint_t *full);
static void ngx_graph_notify_graph_tenant_free(ngx_graph_notify_tenant_t *t,
    ngx_uint_t forget);
static void ngx_graph_notify_graph_drop_item(ngx_graph_notify_rjob_t *rj,
    ngx_str_t *id, ngx_graph_notify_record_drop_e reason, const char *what);
static void ngx_graph_notify_graph_drop_log(
    ngx_graph_notify_record_drop_e reason, ngx_str_t *id, ngx_uint_t n,
    const char *what, ngx_uint_t status, time_t age);
static void ngx_graph_notify_graph_drop_summary(
    ngx_graph_notify_record_drop_e reason, time_t now);
static void ngx_graph_notify_graph_sweep(ngx_graph_notify_graph_t *g);
static void ngx_graph_notify_graph_publish(ngx_graph_notify_graph_t *g);
static ngx_graph_notify_record_t *ngx_graph_notify_graph_record(
    ngx_graph_notify_index_node_t *node, ngx_graph_notify_tenant_t *tenant);
static void ngx_graph_notify_graph_free_record(
    ngx_graph_notify_record_t *rec);
static void ngx_graph_notify_graph_finish_job(ngx_graph_notify_rjob_t *rj,
    ngx_uint_t done);
static void ngx_graph_notify_graph_ready(void *data);
static void ngx_graph_notify_graph_pump_handler(ngx_event_t *ev);
static void ngx_graph_notify_graph_pump(void);
static ngx_uint_t ngx_graph_notify_graph_budget(
    ngx_graph_notify_tenant_t *t, ngx_msec_t *wait);
static void ngx_graph_notify_graph_request(ngx_graph_notify_record_t *rec,
    ngx_str_t *bearer);
static void ngx_graph_notify_graph_response(ngx_graph_notify_http_t *req);
static ngx_int_t ngx_graph_notify_graph_page(ngx_graph_notify_record_t *rec,
    ngx_str_t *body);
static void ngx_graph_notify_graph_complete(ngx_graph_notify_record_t *rec);
static ngx_int_t ngx_graph_notify_graph_line(ngx_graph_notify_record_t *rec);
static void ngx_graph_notify_graph_flush(ngx_event_t *ev);
static void ngx_graph_notify_graph_synced(ngx_graph_notify_commit_t *c,
    ngx_int_t rc);
static void ngx_graph_notify_graph_finish(ngx_graph_notify_record_t *rec,
    ngx_uint_t done);
static void ngx_graph_notify_graph_retry(ngx_graph_notify_record_t *rec,
    ngx_msec_t delay);
static void ngx_graph_notify_graph_failed(ngx_graph_notify_record_t *rec,
    ngx_graph_notify_record_drop_e reason, const char *what);
static void ngx_graph_notify_graph_drop(ngx_graph_notify_record_t *rec,
    ngx_graph_notify_record_drop_e reason, const char *what);
static void ngx_graph_notify_graph_timer(ngx_event_t *ev);
static void ngx_graph_notify_graph_enqueue(ngx_graph_notify_record_t *rec,
    ngx_uint_t head);
static ngx_msec_t ngx_graph_notify_graph_backoff(ngx_uint_t attempts);
static void ngx_graph_notify_graph_answered(ngx_graph_notify_answer_e answer);
static void ngx_graph_notify_graph_gauges(void);
static void ngx_graph_notify_graph_stop(void *data);
static void ngx_graph_notify_graph_cleanup(void *data);


ngx_str_t  ngx_graph_notify_answer_names[] = {
    ngx_string("ok"),
    ngx_string("not_found"),
    ngx_string("throttled"),
    ngx_string("unauthorized"),
    ngx_string("server_error"),
    ngx_string("client_error"),
    ngx_string("transport")
};


ngx_str_t  ngx_graph_notify_record_drop_names[] = {
    ngx_string("not_found"),
    ngx_string("rejected"),
    ngx_string("invalid"),
    ngx_string("expired"),
    ngx_string("tenant"),
    ngx_string("tenants")
};


static ngx_graph_notify_graph_t  *ngx_graph_notify_graph;


ngx_int_t
ngx_graph_notify_graph_init(ngx_cycle_t *cycle,
    ngx_graph_notify_main_conf_t *gmcf)
{
    ngx_pool_cleanup_t        *cln;
    ngx_graph_notify_graph_t  *g;

    g = ngx_pcalloc(cycle->pool, sizeof(ngx_graph_notify_graph_t));
    if (g == NULL) {
        return NGX_ERROR;
    }

    g->gmcf = gmcf;
    g->queue = gmcf->shm_zone->data;
    g->stats = &g->queue->sh->stats;
    g->log = cycle->log;
    g->cycle = cycle;
    g->max_tenants = gmcf->max_tenants;

    ngx_rbtree_init(&g->tenant_tree, &g->tenant_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&g->tenants);
    ngx_queue_init(&g->all);
    ngx_queue_init(&g->writing);

    /* a tenant leaves a quarter of the requests to the others */

    g->tenant_running = gmcf->concurrency - gmcf->concurrency / 4;

    if (g->tenant_running == 0) {
        g->tenant_running = 1;
    }

    g->dummy.fd = (ngx_socket_t) -1;

    g->pump.handler = ngx_graph_notify_graph_pump_handler;
    g->pump.data = &g->dummy;
    g->pump.log = g->log;
    g->pump.cancelable = 1;

    g->flush.handler = ngx_graph_notify_graph_flush;
    g->flush.data = &g->dummy;
    g->flush.log = g->log;
    g->flush.cancelable = 1;

    g->start.handler = ngx_graph_notify_graph_start_handler;
    g->start.data = &g->dummy;
    g->start.log = g->log;
    g->start.cancelable = 1;

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_graph_notify_graph_cleanup;
    cln->data = g;

    ngx_graph_notify_graph = g;
    g->stats->graph_enabled = 1;
    g->maintained = ngx_time();

    ngx_graph_notify_graph_start(g);

    return NGX_OK;
}


static void
ngx_graph_notify_graph_start(ngx_graph_notify_graph_t *g)
{
    u_char              *p;
    const char          *what;
    ngx_pool_cleanup_t  *cln;

    /*
     * Fail closed: until every part runs, call-record items stay queued
     * (held by reference in their tenants' backlogs), never written as
     * they came; the start is retried with growing delays.
     */

    what = NULL;

    if (ngx_graph_notify_http_init(g->cycle, g->gmcf) != NGX_OK) {
        what = "the HTTP client could not start";

    } else if (ngx_graph_notify_token_init(g->cycle, g->gmcf,
                                           ngx_graph_notify_graph_ready, g)
               != NGX_OK)
    {
        what = "the token client could not start";

    } else if (ngx_graph_notify_index_open(g->cycle, &g->gmcf->path->name)
               != NGX_OK)
    {
        what = "the index of call records could not be opened";
    }

    if (what) {
        g->start_delay = g->start_delay
                         ? ngx_min(g->start_delay * 2,
                                   NGX_GRAPH_NOTIFY_START_MAX)
                         : NGX_GRAPH_NOTIFY_START_MIN;

        ngx_shmtx_lock(&g->queue->shpool->mutex);
        p = ngx_snprintf(g->stats->graph_error,
                         sizeof(g->stats->graph_error) - 1, "%s", what);
        *p = '\0';
        ngx_shmtx_unlock(&g->queue->shpool->mutex);

        g->stats->graph_failing = 1;

        ngx_log_error(NGX_LOG_ALERT, g->log, 0,
                      "graph_notify: the Graph client could not start: %s; "
                      "call-record notifications stay queued, next attempt "
                      "in %M ms", what, g->start_delay);

        ngx_add_timer(&g->start, g->start_delay);
        return;
    }

    if (g->started == 0 && g->start_delay) {
        ngx_log_error(NGX_LOG_NOTICE, g->log, 0,
                      "graph_notify: the Graph client started");
    }

    cln = ngx_pool_cleanup_add(g->cycle->pool, 0);
    if (cln == NULL) {
        /* retried: nothing runs without its cleanup */
        g->start_delay = NGX_GRAPH_NOTIFY_START_MIN;
        ngx_add_timer(&g->start, g->start_delay);
        return;
    }

    cln->handler = ngx_graph_notify_graph_stop;
    cln->data = g;

    g->started = 1;
    g->start_delay = 0;
    g->stats->graph_failing = 0;

    ngx_log_error(NGX_LOG_NOTICE, g->log, 0,
                  "graph_notify: fetching call records from %V, "
                  "%ui request(s) at once, %ui per second and tenant",
                  &g->gmcf->graph_url, g->gmcf->concurrency, g->gmcf->rate);

    /* what waited meanwhile */

    if (!g->pump.posted) {
        ngx_post_event(&g->pump, &ngx_posted_events);
    }
}


static void
ngx_graph_notify_graph_start_handler(ngx_event_t *ev)
{
    if (ngx_graph_notify_graph && !ngx_exiting && !ngx_quit) {
        ngx_graph_notify_graph_start(ngx_graph_notify_graph);
    }
}


ngx_uint_t
ngx_graph_notify_graph_busy(void)
{
    ngx_graph_notify_graph_t  *g;

    /* enough held: the rest waits in the queue, not in helper memory */

    g = ngx_graph_notify_graph;

    return g && g->held >= NGX_GRAPH_NOTIFY_HELD_MAX;
}


ngx_int_t
ngx_graph_notify_graph_submit(ngx_graph_notify_job_t *job)
{
    ngx_int_t                  rc;
    ngx_graph_notify_graph_t  *g;
    ngx_graph_notify_rjob_t   *rj;

    g = ngx_graph_notify_graph;

    /* the worker told what the item is: no parsing to route it */

    if (g == NULL || job->kind != NGX_GRAPH_NOTIFY_KIND_CALL_RECORD) {
        return NGX_DECLINED;
    }

    rj = ngx_alloc(sizeof(ngx_graph_notify_rjob_t), g->log);
    if (rj == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(rj, sizeof(ngx_graph_notify_rjob_t));
    ngx_queue_init(&rj->queue);

    /* a reference: the copy taken lives in the caller's pool */

    rj->job = *job;
    ngx_str_null(&rj->job.line);
    ngx_str_null(&rj->job.tenant);
    ngx_str_null(&rj->job.record);

    rj->received = job->received ? job->received : ngx_time();

    g->held++;

    rc = ngx_graph_notify_graph_route(rj, job, 0);

    if (rc == NGX_ERROR) {
        /* the caller puts the item back */
        g->held--;
        ngx_free(rj);
    }

    return rc;
}


static ngx_int_t
ngx_graph_notify_graph_route(ngx_graph_notify_rjob_t *rj,
    ngx_graph_notify_job_t *job, ngx_uint_t promoted)
{
    json_t                         *item;
    ngx_uint_t                      full;
    const char                     *change;
    ngx_graph_notify_graph_t       *g;
    ngx_graph_notify_tenant_t      *t;
    ngx_graph_notify_record_t      *rec;
    ngx_graph_notify_index_node_t  *node;

    g = ngx_graph_notify_graph;

    /* Graph's tenant ids are GUIDs: anything else never gets a token */

    if (!ngx_graph_notify_graph_tenant_valid(&job->tenant)) {
        ngx_graph_notify_graph_drop_item(rj, &job->record,
                                         NGX_GRAPH_NOTIFY_RECORD_TENANT,
                                         "invalid tenant id");
        return NGX_OK;
    }

    t = ngx_graph_notify_graph_tenant(&job->tenant, &full);

    if (t == NULL) {
        if (!full) {
            return NGX_ERROR;
        }

        ngx_graph_notify_graph_drop_item(rj, &job->record,
                                         NGX_GRAPH_NOTIFY_RECORD_TENANTS,
                                         "more tenants than "
                                         "graph_notify_max_tenants");
        return NGX_OK;
    }

    t->active = ngx_time();

    if (!g->started) {
        ngx_graph_notify_graph_backlog(t, rj, promoted);
        return NGX_OK;
    }

    node = ngx_graph_notify_index_get(&job->record);
    if (node == NULL) {
        return NGX_ERROR;
    }

    /*
     * Answered already: any item queued before a fetch that has since
     * completed began (queue sequence numbers, not clocks, tell).
     */

    ngx_graph_notify_index_sync();

    if (rj->job.seq <= node->answered) {
        ngx_graph_notify_index_release(node);
        ngx_graph_notify_graph_finish_job(rj, 1);
        ngx_graph_notify_stat_inc(g->queue, records_coalesced);
        return NGX_OK;
    }

    rec = node->active;

    if (rec == NULL
        && ((!promoted && !ngx_queue_empty(&t->backlog))
            || t->records >= ngx_graph_notify_graph_tenant_cap(t)))
    {
        /* the tenant has enough under way: a reference waits */
        ngx_graph_notify_index_release(node);
        ngx_graph_notify_graph_backlog(t, rj, promoted);
        return NGX_OK;
    }

    /* the line is parsed only now: the output line is built from it */

    item = json_loadb((char *) job->line.data, job->line.len, 0, NULL);

    if (item == NULL) {
        ngx_graph_notify_index_release(node);
        return NGX_ERROR;
    }

    change = json_string_value(json_object_get(item, "changeType"));

    if (change) {
        rj->created = (ngx_strcmp(change, "created") == 0);
        rj->updated = (ngx_strcmp(change, "updated") == 0);
    }

    /* "created" is answered once any version is written */

    if (node->version > 0 && rj->created) {
        json_decref(item);
        ngx_graph_notify_index_release(node);
        ngx_graph_notify_graph_finish_job(rj, 1);
        ngx_graph_notify_stat_inc(g->queue, records_coalesced);
        return NGX_OK;
    }

    if (rec == NULL) {
        rec = ngx_graph_notify_graph_record(node, t);
        if (rec == NULL) {
            json_decref(item);
            ngx_graph_notify_index_release(node);
            return NGX_ERROR;
        }

        /* the horizon counts from when the worker accepted it */
        rec->first_seen = rj->received;

    } else {
        ngx_graph_notify_stat_inc(g->queue, records_coalesced);
    }

    /* the newest notification's fields go into the line */

    json_decref(rec->item);
    rec->item = item;

    ngx_queue_insert_tail(&rec->jobs, &rj->queue);

    if (rec->state == NGX_GRAPH_NOTIFY_IDLE) {
        ngx_graph_notify_graph_enqueue(rec, 0);
    }

    return NGX_OK;
}


static void
ngx_graph_notify_graph_backlog(ngx_graph_notify_tenant_t *t,
    ngx_graph_notify_rjob_t *rj, ngx_uint_t head)
{
    ngx_graph_notify_graph_t  *g;

    g = ngx_graph_notify_graph;

    if (head) {
        ngx_queue_insert_head(&t->backlog, &rj->queue);

    } else {
        ngx_queue_insert_tail(&t->backlog, &rj->queue);
    }

    t->backlogged++;
    g->backlog++;
    g->stats->records_backlog = g->backlog;
}


static void
ngx_graph_notify_graph_promote(ngx_graph_notify_tenant_t *t)
{
    ngx_int_t                  rc;
    ngx_uint_t                 n;
    ngx_pool_t                *pool;
    ngx_queue_t               *q;
    ngx_graph_notify_job_t     job;
    ngx_graph_notify_graph_t  *g;
    ngx_graph_notify_rjob_t   *rj;

    g = ngx_graph_notify_graph;

    /* backlog items whose turn came: read back from the zone, routed */

    for (n = 0; n < NGX_GRAPH_NOTIFY_PROMOTE; n++) {

        if (ngx_queue_empty(&t->backlog)
            || t->records >= ngx_graph_notify_graph_tenant_cap(t))
        {
            return;
        }

        q = ngx_queue_head(&t->backlog);
        rj = ngx_queue_data(q, ngx_graph_notify_rjob_t, queue);

        ngx_queue_remove(q);
        ngx_queue_init(q);
        t->backlogged--;
        g->backlog--;
        g->stats->records_backlog = g->backlog;

        pool = ngx_create_pool(4096, g->log);
        if (pool == NULL) {
            ngx_graph_notify_graph_backlog(t, rj, 1);
            return;
        }

        job = rj->job;

        rc = ngx_graph_notify_queue_read(g->queue, &job, pool);

        if (rc == NGX_DECLINED) {
            /* another helper took it over: its lease had run out */
            ngx_destroy_pool(pool);
            g->held--;
            ngx_free(rj);
            continue;
        }

        if (rc == NGX_OK) {
            rc = ngx_graph_notify_graph_route(rj, &job, 1);
        }

        ngx_destroy_pool(pool);

        if (rc == NGX_ERROR) {
            ngx_graph_notify_graph_backlog(t, rj, 1);
            return;
        }
    }

    /* more next turn */

    if (!g->pump.posted) {
        ngx_post_event(&g->pump, &ngx_posted_events);
    }
}


static ngx_uint_t
ngx_graph_notify_graph_tenant_cap(ngx_graph_notify_tenant_t *t)
{
    return (t->no_token || t->paused) ? NGX_GRAPH_NOTIFY_STUCK_RECORDS
                                      : NGX_GRAPH_NOTIFY_TENANT_RECORDS;
}


static ngx_uint_t
ngx_graph_notify_graph_tenant_valid(ngx_str_t *id)
{
    ngx_uint_t  i;

    /* 8-4-4-4-12 hexadecimal digits */

    if (id->data == NULL || id->len != 36) {
        return 0;
    }

    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (id->data[i] != '-') {
                return 0;
            }

            continue;
        }

        if (!isxdigit(id->data[i])) {
            return 0;
        }
    }

    return 1;
}


static ngx_graph_notify_tenant_t *
ngx_graph_notify_graph_tenant(ngx_str_t *id, ngx_uint_t *full)
{
    u_char                      key[36];
    uint32_t                    hash;
    ngx_str_t                   name;
    ngx_graph_notify_graph_t   *g;
    ngx_graph_notify_tenant_t  *t;

    g = ngx_graph_notify_graph;
    *full = 0;

    /* one entry per tenant, whatever the case of its id */

    ngx_strlow(key, id->data, 36);
    name.data = key;
    name.len = 36;

    hash = ngx_crc32_short(key, 36);

    t = (ngx_graph_notify_tenant_t *)
            ngx_str_rbtree_lookup(&g->tenant_tree, &name, hash);

    if (t) {
        return t;
    }

    if (g->ntenants >= g->max_tenants) {
        *full = 1;
        return NULL;
    }

    t = ngx_alloc(sizeof(ngx_graph_notify_tenant_t) + 36, g->log);
    if (t == NULL) {
        return NULL;
    }

    ngx_memzero(t, sizeof(ngx_graph_notify_tenant_t));

    t->sn.node.key = hash;
    t->sn.str.data = (u_char *) t + sizeof(ngx_graph_notify_tenant_t);
    t->sn.str.len = 36;
    ngx_memcpy(t->sn.str.data, key, 36);

    ngx_queue_init(&t->ready);
    ngx_queue_init(&t->backlog);
    t->refilled = ngx_current_msec;
    t->budget = g->gmcf->rate * 1000;
    t->active = ngx_time();

    ngx_rbtree_insert(&g->tenant_tree, &t->sn.node);
    ngx_queue_insert_tail(&g->tenants, &t->link);
    g->ntenants++;

    return t;
}


static void
ngx_graph_notify_graph_tenant_free(ngx_graph_notify_tenant_t *t,
    ngx_uint_t forget)
{
    ngx_graph_notify_graph_t  *g;

    g = ngx_graph_notify_graph;

    if (forget) {
        ngx_graph_notify_token_forget(&t->sn.str);
    }

    ngx_rbtree_delete(&g->tenant_tree, &t->sn.node);
    ngx_queue_remove(&t->link);
    g->ntenants--;
    ngx_free(t);
}


static void
ngx_graph_notify_graph_drop_item(ngx_graph_notify_rjob_t *rj, ngx_str_t *id,
    ngx_graph_notify_record_drop_e reason, const char *what)
{
    ngx_graph_notify_graph_t  *g;

    /* an item that can never be fetched: gone at once, counted, logged */

    g = ngx_graph_notify_graph;

    ngx_graph_notify_graph_drop_log(reason, id, 1, what, 0,
                                    ngx_time() - rj->received);
    ngx_graph_notify_graph_finish_job(rj, 1);
    ngx_graph_notify_stat_inc(g->queue, records_dropped[reason]);
}


static void
ngx_graph_notify_graph_drop_log(ngx_graph_notify_record_drop_e reason,
    ngx_str_t *id, ngx_uint_t n, const char *what, ngx_uint_t status,
    time_t age)
{
    time_t                        now;
    ngx_graph_notify_graph_t     *g;
    ngx_graph_notify_drop_log_t  *d;

    /*
     * One line per reason and minute, naming a record; the others are
     * counted into the next line, or into a summary from the poll.
     */

    g = ngx_graph_notify_graph;
    d = &g->drops[reason];
    now = ngx_time();

    if (now - d->logged < NGX_GRAPH_NOTIFY_DROP_LOG) {
        d->records++;
        d->items += n;
        return;
    }

    if (id) {
        ngx_log_error(NGX_LOG_ERR, g->log, 0,
                      "graph_notify: dropped call record %V (%ui "
                      "notification(s)): %s, last HTTP status %ui, "
                      "after %T s", id, n, what, status, age);

    } else {
        ngx_log_error(NGX_LOG_ERR, g->log, 0,
                      "graph_notify: dropped a call-record notification: "
                      "%s, after %T s", what, age);
    }

    ngx_graph_notify_graph_drop_summary(reason, now);

    d->logged = now;
}


static void
ngx_graph_notify_graph_drop_summary(ngx_graph_notify_record_drop_e reason,
    time_t now)
{
    ngx_graph_notify_drop_log_t  *d;

    d = &ngx_graph_notify_graph->drops[reason];

    if (d->records == 0) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, ngx_graph_notify_graph->log, 0,
                  "graph_notify: dropped %ui more call record(s) (%ui "
                  "notification(s)) as \"%V\" in the last %T s",
                  d->records, d->items,
                  &ngx_graph_notify_record_drop_names[reason],
                  now - d->logged);

    d->records = 0;
    d->items = 0;
    d->logged = now;
}


static ngx_graph_notify_record_t *
ngx_graph_notify_graph_record(ngx_graph_notify_index_node_t *node,
    ngx_graph_notify_tenant_t *tenant)
{
    ngx_graph_notify_graph_t   *g;
    ngx_graph_notify_record_t  *rec;

    g = ngx_graph_notify_graph;

    rec = ngx_calloc(sizeof(ngx_graph_notify_record_t), g->log);
    if (rec == NULL) {
        return NULL;
    }

    rec->node = node;
    rec->tenant = tenant;
    rec->first_seen = ngx_time();

    ngx_queue_init(&rec->jobs);
    ngx_queue_init(&rec->answering);

    rec->timer.handler = ngx_graph_notify_graph_timer;
    rec->timer.data = &g->dummy;
    rec->timer.log = g->log;
    rec->timer.cancelable = 1;

    node->active = rec;
    g->records++;
    tenant->records++;
    ngx_queue_insert_tail(&g->all, &rec->all);

    ngx_graph_notify_graph_gauges();

    return rec;
}


static void
ngx_graph_notify_graph_free_record(ngx_graph_notify_record_t *rec)
{
    ngx_graph_notify_graph_t  *g;

    g = ngx_graph_notify_graph;

    if (rec->timer.timer_set) {
        ngx_del_timer(&rec->timer);
    }

    if (rec->state == NGX_GRAPH_NOTIFY_QUEUED
        || rec->state == NGX_GRAPH_NOTIFY_WRITING)
    {
        ngx_queue_remove(&rec->link);
    }

    if (rec->pool) {
        ngx_destroy_pool(rec->pool);
        rec->pool = NULL;
    }

    if (rec->line.data) {
        free(rec->line.data);
    }

    while (!ngx_queue_empty(&rec->jobs)) {
        ngx_graph_notify_graph_finish_job(
            ngx_queue_data(ngx_queue_head(&rec->jobs),
                           ngx_graph_notify_rjob_t, queue), 0);
    }

    while (!ngx_queue_empty(&rec->answering)) {
        ngx_graph_notify_graph_finish_job(
            ngx_queue_data(ngx_queue_head(&rec->answering),
                           ngx_graph_notify_rjob_t, queue), 0);
    }

    json_decref(rec->record);
    json_decref(rec->item);

    rec->node->active = NULL;
    ngx_graph_notify_index_release(rec->node);

    ngx_queue_remove(&rec->all);
    g->records--;
    rec->tenant->records--;

    /* room for the tenant's backlog */

    if (!ngx_queue_empty(&rec->tenant->backlog) && !g->pump.posted) {
        ngx_post_event(&g->pump, &ngx_posted_events);
    }

    ngx_free(rec);

    ngx_graph_notify_graph_gauges();
}


static void
ngx_graph_notify_graph_finish_job(ngx_graph_notify_rjob_t *rj,
    ngx_uint_t done)
{
    ngx_graph_notify_graph_t  *g;

    g = ngx_graph_notify_graph;

    /* done: the item leaves the queue; else it goes back for a retry */

    ngx_queue_remove(&rj->queue);

    if (done) {
        ngx_graph_notify_queue_done(g->queue, &rj->job);

    } else {
        ngx_graph_notify_queue_release(g->queue, &rj->job);
    }

    ngx_free(rj);

    if (g->held-- == NGX_GRAPH_NOTIFY_HELD_MAX) {
        ngx_graph_notify_helper_kick();
    }
}


static void
ngx_graph_notify_graph_enqueue(ngx_graph_notify_record_t *rec,
    ngx_uint_t head)
{
    ngx_graph_notify_graph_t  *g;

    g = ngx_graph_notify_graph;

    if (rec->state == NGX_GRAPH_NOTIFY_DELAYED) {
        g->waiting--;
    }

    if (head) {
        ngx_queue_insert_head(&rec->tenant->ready, &rec->link);

    } else {
        ngx_queue_insert_tail(&rec->tenant->ready, &rec->link);
    }

    rec->state = NGX_GRAPH_NOTIFY_QUEUED;

    if (!g->pump.posted) {
        ngx_post_event(&g->pump, &ngx_posted_events);
    }

    ngx_graph_notify_graph_gauges();
}


static void
ngx_graph_notify_graph_ready(void *data)
{
    ngx_graph_notify_graph_t  *g = data;

    /* a token arrived, or its back-off ended */

    if (!g->pump.posted) {
        ngx_post_event(&g->pump, &ngx_posted_events);
    }
}


static void
ngx_graph_notify_graph_pump_handler(ngx_event_t *ev)
{
    ngx_graph_notify_graph_pump();
}


static void
ngx_graph_notify_graph_pump(void)
{
    ngx_int_t                   rc;
    ngx_msec_t                  wait, next;
    ngx_str_t                   bearer;
    ngx_uint_t                  progress;
    ngx_queue_t                *q;
    ngx_graph_notify_graph_t   *g;
    ngx_graph_notify_tenant_t  *t;
    ngx_graph_notify_record_t  *rec;

    g = ngx_graph_notify_graph;

    if (!g->started) {
        return;
    }

    next = 0;

    for (q = ngx_queue_head(&g->tenants);
         q != ngx_queue_sentinel(&g->tenants);
         q = ngx_queue_next(q))
    {
        t = ngx_queue_data(q, ngx_graph_notify_tenant_t, link);

        if (!ngx_queue_empty(&t->backlog)) {
            ngx_graph_notify_graph_promote(t);
        }
    }

    /*
     * Round robin, one request per tenant and round, and no tenant takes
     * more than its share of the requests at once.
     */

    do {
        progress = 0;

        for (q = ngx_queue_head(&g->tenants);
             q != ngx_queue_sentinel(&g->tenants)
             && g->running < g->gmcf->concurrency;
             q = ngx_queue_next(q))
        {
            t = ngx_queue_data(q, ngx_graph_notify_tenant_t, link);

            if (ngx_queue_empty(&t->ready)
                || t->running >= g->tenant_running)
            {
                continue;
            }

            if (t->paused) {
                wait = t->paused_until - ngx_current_msec;

                if ((ngx_msec_int_t) wait > 0) {
                    next = (next == 0 || wait < next) ? wait : next;
                    continue;
                }

                t->paused = 0;
            }

            if (!ngx_graph_notify_graph_budget(t, &wait)) {
                next = (next == 0 || wait < next) ? wait : next;
                continue;
            }

            rc = ngx_graph_notify_token_get(&t->sn.str, &bearer);

            if (rc != NGX_OK) {
                /*
                 * The token client calls back when it has news; a tenant
                 * whose sign-in fails works on fewer records meanwhile.
                 */

                if (rc != NGX_AGAIN) {
                    t->no_token = 1;
                }

                continue;
            }

            t->no_token = 0;
            t->budget -= 1000;

            rec = ngx_queue_data(ngx_queue_head(&t->ready),
                                 ngx_graph_notify_record_t, link);
            ngx_queue_remove(&rec->link);

            ngx_graph_notify_graph_request(rec, &bearer);

            progress = 1;
        }

    } while (progress && g->running < g->gmcf->concurrency);

    /* the next pump starts with another tenant */

    if (!ngx_queue_empty(&g->tenants)) {
        q = ngx_queue_head(&g->tenants);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&g->tenants, q);
    }

    if (next) {
        if (g->pump.timer_set) {
            ngx_del_timer(&g->pump);
        }

        ngx_add_timer(&g->pump, next);
    }
}


static ngx_uint_t
ngx_graph_notify_graph_budget(ngx_graph_notify_tenant_t *t, ngx_msec_t *wait)
{
    ngx_uint_t                 rate;
    ngx_msec_t                 elapsed;
    ngx_graph_notify_graph_t  *g;

    /* a token bucket of one second's requests, in thousandths */

    g = ngx_graph_notify_graph;
    rate = g->gmcf->rate;

    elapsed = ngx_current_msec - t->refilled;
    t->refilled = ngx_current_msec;

    t->budget += elapsed * rate;

    if (t->budget > rate * 1000) {
        t->budget = rate * 1000;
    }

    if (t->budget >= 1000) {
        return 1;
    }

    *wait = (1000 - t->budget + rate - 1) / rate;

    return 0;
}


static void
ngx_graph_notify_graph_request(ngx_graph_notify_record_t *rec,
    ngx_str_t *bearer)
{
    u_char                    *p;
    ngx_str_t                  url, name;
    ngx_graph_notify_http_t   *req;
    ngx_graph_notify_graph_t  *g;

    g = ngx_graph_notify_graph;

    if (rec->pool == NULL) {
        rec->pool = ngx_create_pool(16384, g->log);
        if (rec->pool == NULL) {
            ngx_graph_notify_graph_retry(rec, NGX_GRAPH_NOTIFY_BACKOFF_MIN);
            return;
        }
    }

    if (rec->next.len) {
        url = rec->next;

    } else {
        /* the first page: this fetch answers every notification so far */

        url.len = g->gmcf->graph_url.len
                  + sizeof("/v1.0/communications/callRecords/") - 1
                  + rec->node->sn.str.len + sizeof(NGX_GRAPH_NOTIFY_EXPAND);

        url.data = ngx_pnalloc(rec->pool, url.len);
        if (url.data == NULL) {
            ngx_graph_notify_graph_retry(rec, NGX_GRAPH_NOTIFY_BACKOFF_MIN);
            return;
        }

        p = ngx_sprintf(url.data, "%V/v1.0/communications/callRecords/%V"
                        NGX_GRAPH_NOTIFY_EXPAND "%Z",
                        &g->gmcf->graph_url, &rec->node->sn.str);
        url.len = p - url.data - 1;

        ngx_queue_add(&rec->answering, &rec->jobs);
        ngx_queue_init(&rec->jobs);

        /* what was queued before now is answered by this fetch */
        rec->fetch_seq = ngx_graph_notify_queue_last_seq(g->queue);
        rec->pages = 0;
    }

    req = ngx_graph_notify_http_create(rec->pool, g->log, "GET", &url);
    if (req == NULL) {
        ngx_graph_notify_graph_retry(rec, NGX_GRAPH_NOTIFY_BACKOFF_MIN);
        return;
    }

    rec->bearer.data = ngx_pnalloc(rec->pool, bearer->len);
    if (rec->bearer.data == NULL) {
        ngx_graph_notify_graph_retry(rec, NGX_GRAPH_NOTIFY_BACKOFF_MIN);
        return;
    }

    rec->bearer.len = bearer->len;
    ngx_memcpy(rec->bearer.data, bearer->data, bearer->len);

    ngx_str_set(&name, "Authorization");

    if (ngx_graph_notify_http_header(req, &name, bearer) != NGX_OK) {
        ngx_graph_notify_graph_retry(rec, NGX_GRAPH_NOTIFY_BACKOFF_MIN);
        return;
    }

    req->handler = ngx_graph_notify_graph_response;
    req->data = rec;

    if (ngx_graph_notify_http_start(req) != NGX_OK) {
        ngx_graph_notify_graph_retry(rec, NGX_GRAPH_NOTIFY_BACKOFF_MIN);
        return;
    }

    rec->req = req;
    rec->state = NGX_GRAPH_NOTIFY_RUNNING;
    rec->not_before = ngx_current_msec + NGX_GRAPH_NOTIFY_RECORD_SPACING;

    g->running++;
    rec->tenant->running++;
    ngx_graph_notify_stat_inc(g->queue, graph_requests);
    ngx_graph_notify_graph_gauges();
}


static void
ngx_graph_notify_graph_response(ngx_graph_notify_http_t *req)
{
    long                        status;
    ngx_msec_t                  pause;
    ngx_graph_notify_graph_t   *g;
    ngx_graph_notify_tenant_t  *t;
    ngx_graph_notify_record_t  *rec;

    g = ngx_graph_notify_graph;
    rec = req->data;
    t = rec->tenant;

    g->running--;
    t->running--;
    rec->req = NULL;
    rec->state = NGX_GRAPH_NOTIFY_IDLE;

    status = req->status;
    rec->last_status = status;

    if (req->result != CURLE_OK) {
        ngx_graph_notify_graph_answered(NGX_GRAPH_NOTIFY_ANSWER_TRANSPORT);
        ngx_log_error(NGX_LOG_WARN, g->log, 0,
                      "graph_notify: call record %V: %s",
                      &rec->node->sn.str,
                      req->error[0] ? req->error
                                    : curl_easy_strerror(req->result));
        ngx_graph_notify_graph_failed(rec, NGX_GRAPH_NOTIFY_RECORD_EXPIRED,
                                      "Graph could not be reached");
        goto next;
    }

    if (status == 200) {
        ngx_graph_notify_graph_answered(NGX_GRAPH_NOTIFY_ANSWER_OK);
        t->throttles = 0;
        rec->unauthorized = 0;

        if (ngx_graph_notify_graph_page(rec, &req->body) != NGX_OK) {
            ngx_graph_notify_graph_failed(rec,
                                          NGX_GRAPH_NOTIFY_RECORD_INVALID,
                                          "Graph's answer was not a call "
                                          "record");
            goto next;
        }

        if (rec->next.len == 0) {
            ngx_graph_notify_graph_complete(rec);
            goto next;
        }

        /* the next page, no sooner than the per-record spacing allows */

        pause = rec->not_before - ngx_current_msec;

        if ((ngx_msec_int_t) pause > 0) {
            ngx_graph_notify_graph_retry(rec, pause);

        } else {
            ngx_graph_notify_graph_enqueue(rec, 1);
        }

        goto next;
    }

    if (status == 429 || ((status == 503 || status == 504)
                          && req->retry_after >= 0))
    {
        /* throttled: the whole tenant waits, as Graph counts per tenant */

        ngx_graph_notify_graph_answered(NGX_GRAPH_NOTIFY_ANSWER_THROTTLED);
        ngx_graph_notify_stat_inc(g->queue, tenant_pauses);

        pause = (req->retry_after >= 0)
                ? (ngx_msec_t) req->retry_after * 1000
                : ngx_graph_notify_graph_backoff(++t->throttles);

        if (!t->paused
            || (ngx_msec_int_t) (ngx_current_msec + pause - t->paused_until)
               > 0)
        {
            t->paused = 1;
            t->paused_until = ngx_current_msec + pause;
        }

        ngx_log_error(NGX_LOG_WARN, g->log, 0,
                      "graph_notify: Graph answered %l for tenant %V, "
                      "pausing it for %M ms", status, &t->sn.str, pause);

        ngx_graph_notify_graph_enqueue(rec, 1);
        goto next;
    }

    if (status == 401 || status == 403) {
        ngx_graph_notify_graph_answered(NGX_GRAPH_NOTIFY_ANSWER_UNAUTHORIZED);

        /* an expired or revoked token: one fresh token, at once */

        if (status == 401 && rec->unauthorized++ == 0) {
            ngx_graph_notify_token_invalidate(&t->sn.str, &rec->bearer);
            ngx_graph_notify_graph_enqueue(rec, 1);
            goto next;
        }

        ngx_log_error(NGX_LOG_ERR, g->log, 0,
                      "graph_notify: Graph answered %l for call record %V: "
                      "is CallRecords.Read.All granted to the app?",
                      status, &rec->node->sn.str);

        ngx_graph_notify_graph_failed(rec, NGX_GRAPH_NOTIFY_RECORD_EXPIRED,
                                      "Graph refused the app's token");
        goto next;
    }

    if (status == 404) {
        /* not ready yet: records can take up to an hour, or more */

        ngx_graph_notify_graph_answered(NGX_GRAPH_NOTIFY_ANSWER_NOT_FOUND);
        ngx_graph_notify_graph_failed(rec, NGX_GRAPH_NOTIFY_RECORD_NOT_FOUND,
                                      "not found");
        goto next;
    }

    if (status >= 500 || status == 408) {
        ngx_graph_notify_graph_answered(NGX_GRAPH_NOTIFY_ANSWER_SERVER_ERROR);
        ngx_graph_notify_graph_failed(rec, NGX_GRAPH_NOTIFY_RECORD_EXPIRED,
                                      "Graph kept failing");
        goto next;
    }

    ngx_graph_notify_graph_answered(NGX_GRAPH_NOTIFY_ANSWER_CLIENT_ERROR);
    ngx_graph_notify_graph_drop(rec, NGX_GRAPH_NOTIFY_RECORD_REJECTED,
                                "Graph rejected the request");

next:

    ngx_graph_notify_graph_pump();
}


static ngx_int_t
ngx_graph_notify_graph_page(ngx_graph_notify_record_t *rec, ngx_str_t *body)
{
    json_t       *page, *next, *sessions, *value;
    const char   *link;
    ngx_str_t     s;

    page = json_loadb((char *) body->data, body->len, 0, NULL);

    if (!json_is_object(page)) {
        json_decref(page);
        return NGX_ERROR;
    }

    rec->pages++;

    if (rec->record == NULL) {
        /* the record itself, its first sessions inline */

        if (!json_is_string(json_object_get(page, "id"))
            || !json_is_integer(json_object_get(page, "version")))
        {
            json_decref(page);
            return NGX_ERROR;
        }

        next = json_object_get(page, "sessions@odata.nextLink");
        rec->record = page;

    } else {
        /* a further page of sessions */

        sessions = json_object_get(rec->record, "sessions");
        value = json_object_get(page, "value");

        if (!json_is_array(value)) {
            json_decref(page);
            return NGX_ERROR;
        }

        if (!json_is_array(sessions)) {
            sessions = json_array();
            if (json_object_set_new(rec->record, "sessions", sessions) != 0)
            {
                json_decref(page);
                return NGX_ERROR;
            }
        }

        if (json_array_extend(sessions, value) != 0) {
            json_decref(page);
            return NGX_ERROR;
        }

        next = json_object_get(page, "@odata.nextLink");
    }

    ngx_str_null(&rec->next);

    link = json_string_value(next);

    if (link && *link) {
        /* opaque: fetched as given, with the same token */

        s.len = ngx_strlen(link);
        s.data = ngx_pnalloc(rec->pool, s.len + 1);
        if (s.data == NULL) {
            if (page != rec->record) {
                json_decref(page);
            }

            return NGX_ERROR;
        }

        ngx_memcpy(s.data, link, s.len + 1);
        rec->next = s;
    }

    /* the merged record carries all sessions and no paging link */

    (void) json_object_del(rec->record, "sessions@odata.nextLink");

    if (page != rec->record) {
        json_decref(page);
    }

    return NGX_OK;
}


static void
ngx_graph_notify_graph_complete(ngx_graph_notify_record_t *rec)
{
    int64_t                    version;
    ngx_uint_t                 updated;
    ngx_queue_t               *q;
    ngx_graph_notify_graph_t  *g;
    ngx_graph_notify_rjob_t   *rj;

    g = ngx_graph_notify_graph;

    version = json_integer_value(json_object_get(rec->record, "version"));

    /* another helper may have written it meanwhile (during a reload) */
    ngx_graph_notify_index_sync();

    if (version <= rec->node->version) {

        /*
         * After "updated", the version written already may be a stale
         * read (a replica behind): asked again, paced as any retry, a
         * few times before the record counts as unchanged.
         */

        updated = 0;

        for (q = ngx_queue_head(&rec->answering);
             q != ngx_queue_sentinel(&rec->answering);
             q = ngx_queue_next(q))
        {
            rj = ngx_queue_data(q, ngx_graph_notify_rjob_t, queue);
            updated |= rj->updated;
        }

        if (updated && rec->stale < NGX_GRAPH_NOTIFY_STALE_MAX) {
            rec->stale++;
            ngx_graph_notify_stat_inc(g->queue, records_stale);

            ngx_log_error(NGX_LOG_INFO, g->log, 0,
                          "graph_notify: call record %V: version %L after "
                          "\"updated\", written already; asking again",
                          &rec->node->sn.str, version);

            json_decref(rec->record);
            rec->record = NULL;
            ngx_str_null(&rec->next);

            ngx_graph_notify_graph_retry(rec,
                                   ngx_graph_notify_graph_backoff(rec->stale));
            return;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, g->log, 0,
                       "graph_notify: call record %V version %L written "
                       "already", &rec->node->sn.str, version);

        ngx_graph_notify_stat_inc(g->queue, records_unchanged);
        ngx_graph_notify_graph_finish(rec, 1);
        return;
    }

    if (ngx_graph_notify_graph_line(rec) != NGX_OK) {
        ngx_graph_notify_graph_finish(rec, 0);
        return;
    }

    /*
     * Written with the other records completed in this turn of the event
     * loop: one write and one fdatasync for all of them.
     */

    rec->version = version;
    rec->state = NGX_GRAPH_NOTIFY_WRITING;
    ngx_queue_insert_tail(&g->writing, &rec->link);

    if (!g->flush.posted && !g->flush.timer_set) {
        ngx_post_event(&g->flush, &ngx_posted_events);
    }
}


static ngx_int_t
ngx_graph_notify_graph_line(ngx_graph_notify_record_t *rec)
{
    char                      *dump;
    json_t                    *out;
    ngx_uint_t                 n;
    ngx_queue_t               *q;
    u_char                     ts[sizeof("1970-01-01T00:00:00.000Z")];

    n = 0;

    for (q = ngx_queue_head(&rec->answering);
         q != ngx_queue_sentinel(&rec->answering);
         q = ngx_queue_next(q))
    {
        n++;
    }

    /* the newest notification's fields, then the record as fetched */

    out = json_copy(rec->item);
    if (out == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_graph_notify_timestamp(ts);

    if (json_object_set_new(out, "kind", json_string("callRecord")) != 0
        || json_object_set_new(out, "fetchedAt", json_string((char *) ts))
           != 0
        || json_object_set_new(out, "notifications", json_integer(n)) != 0
        || json_object_set(out, "callRecord", rec->record) != 0)
    {
        json_decref(out);
        return NGX_ERROR;
    }

    dump = json_dumps(out, JSON_COMPACT);
    json_decref(out);

    if (dump == NULL) {
        return NGX_ERROR;
    }

    rec->line.data = (u_char *) dump;
    rec->line.len = ngx_strlen(dump);
    rec->answers = n;

    /* the whole record is in the line now */

    json_decref(rec->record);
    rec->record = NULL;

    return NGX_OK;
}


static void
ngx_graph_notify_graph_flush(ngx_event_t *ev)
{
    u_char                       *buf, *p;
    size_t                        len;
    ngx_int_t                     rc;
    ngx_queue_t                  *q, batch;
    ngx_graph_notify_graph_t     *g;
    ngx_graph_notify_record_t    *rec;
    ngx_graph_notify_gwritten_t  *w;

    g = ngx_graph_notify_graph;

    if (ngx_queue_empty(&g->writing)) {
        return;
    }

    w = ngx_alloc(sizeof(ngx_graph_notify_gwritten_t), g->log);
    if (w == NULL) {
        ngx_add_timer(&g->flush, 1000);
        return;
    }

    ngx_queue_init(&batch);
    ngx_queue_add(&batch, &g->writing);
    ngx_queue_init(&g->writing);

    len = 0;

    for (q = ngx_queue_head(&batch);
         q != ngx_queue_sentinel(&batch);
         q = ngx_queue_next(q))
    {
        rec = ngx_queue_data(q, ngx_graph_notify_record_t, link);
        len += rec->line.len + 1;
    }

    buf = ngx_alloc(len, g->log);
    rc = NGX_ERROR;

    if (buf) {
        p = buf;

        for (q = ngx_queue_head(&batch);
             q != ngx_queue_sentinel(&batch);
             q = ngx_queue_next(q))
        {
            rec = ngx_queue_data(q, ngx_graph_notify_record_t, link);
            p = ngx_cpymem(p, rec->line.data, rec->line.len);
            *p++ = LF;
        }

        rc = ngx_graph_notify_output_append(g->gmcf->output, 0, buf, len,
                                            g->log);
        ngx_free(buf);
    }

    if (rc != NGX_OK) {
        /*
         * The output cannot be written (disk full): keep the lines and
         * try again in a second, without asking Graph again meanwhile.
         */

        ngx_graph_notify_stat_inc(g->queue, output_errors);
        ngx_queue_add(&batch, &g->writing);
        ngx_queue_init(&g->writing);
        ngx_queue_add(&g->writing, &batch);

        ngx_add_timer(&g->flush, 1000);
        ngx_free(w);
        return;
    }

    /*
     * The records stay as they are (their items in flight) until a sync
     * begun after this write has completed: the helper's group commit.
     */

    ngx_queue_init(&w->batch);
    ngx_queue_add(&w->batch, &batch);

    w->commit.handler = ngx_graph_notify_graph_synced;
    w->commit.data = w;

    ngx_graph_notify_commit(g->gmcf->output, &w->commit);
}


static void
ngx_graph_notify_graph_synced(ngx_graph_notify_commit_t *c, ngx_int_t rc)
{
    ngx_queue_t                  *q, batch;
    ngx_graph_notify_graph_t     *g;
    ngx_graph_notify_record_t    *rec;
    ngx_graph_notify_gwritten_t  *w;

    w = c->data;
    g = ngx_graph_notify_graph;

    ngx_queue_init(&batch);
    ngx_queue_add(&batch, &w->batch);
    ngx_free(w);

    if (g == NULL || ngx_queue_empty(&batch)) {
        return;
    }

    if (rc != NGX_OK) {
        /* written again in a second: twice rather than never */

        ngx_graph_notify_stat_inc(g->queue, output_errors);
        ngx_queue_add(&batch, &g->writing);
        ngx_queue_init(&g->writing);
        ngx_queue_add(&g->writing, &batch);

        if (!g->flush.timer_set) {
            ngx_add_timer(&g->flush, 1000);
        }

        return;
    }

    while (!ngx_queue_empty(&batch)) {
        q = ngx_queue_head(&batch);
        ngx_queue_remove(q);
        rec = ngx_queue_data(q, ngx_graph_notify_record_t, link);

        rec->state = NGX_GRAPH_NOTIFY_IDLE;

        (void) ngx_graph_notify_index_written(rec->node, rec->version);
        ngx_graph_notify_stat_inc(g->queue, records_written);
        ngx_graph_notify_stat_add(g->queue, items_written, rec->answers);

        ngx_graph_notify_graph_finish(rec, 1);
    }

    ngx_graph_notify_graph_pump();
}


static void
ngx_graph_notify_graph_finish(ngx_graph_notify_record_t *rec,
    ngx_uint_t done)
{
    ngx_queue_t                    *q;
    ngx_graph_notify_rjob_t        *rj;
    ngx_graph_notify_index_node_t  *node;

    node = rec->node;

    if (done && rec->fetch_seq > node->answered) {
        node->answered = rec->fetch_seq;
    }

    while (!ngx_queue_empty(&rec->answering)) {
        q = done ? ngx_queue_head(&rec->answering)
                 : ngx_queue_last(&rec->answering);
        rj = ngx_queue_data(q, ngx_graph_notify_rjob_t, queue);
        ngx_graph_notify_graph_finish_job(rj, done);
    }

    if (rec->line.data) {
        free(rec->line.data);
        ngx_str_null(&rec->line);
    }

    json_decref(rec->record);
    rec->record = NULL;
    ngx_str_null(&rec->next);
    rec->attempts = 0;
    rec->unauthorized = 0;
    rec->stale = 0;

    if (rec->pool) {
        ngx_destroy_pool(rec->pool);
        rec->pool = NULL;
    }

    /*
     * Answered meanwhile: "created" once a version is written, and items
     * queued before the fetch began but taken during it.
     */

    q = ngx_queue_head(&rec->jobs);

    while (q != ngx_queue_sentinel(&rec->jobs)) {
        rj = ngx_queue_data(q, ngx_graph_notify_rjob_t, queue);
        q = ngx_queue_next(q);

        if ((node->version > 0 && rj->created)
            || (done && rj->job.seq <= node->answered))
        {
            ngx_graph_notify_stat_inc(ngx_graph_notify_graph->queue,
                                      records_coalesced);
            ngx_graph_notify_graph_finish_job(rj, 1);
        }
    }

    if (ngx_queue_empty(&rec->jobs)) {
        ngx_graph_notify_graph_free_record(rec);
        return;
    }

    /* notifications that came during the fetch: the record may be newer */

    rj = ngx_queue_data(ngx_queue_head(&rec->jobs), ngx_graph_notify_rjob_t,
                        queue);
    rec->first_seen = rj->received;
    ngx_graph_notify_graph_enqueue(rec, 0);
}


static void
ngx_graph_notify_graph_failed(ngx_graph_notify_record_t *rec,
    ngx_graph_notify_record_drop_e reason, const char *what)
{
    time_t                     left;
    ngx_msec_t                 delay;
    ngx_graph_notify_graph_t  *g;

    /* retried with growing delays until the horizon, then dropped */

    g = ngx_graph_notify_graph;

    left = rec->first_seen + g->gmcf->record_horizon - ngx_time();

    if (left <= 0) {
        ngx_graph_notify_graph_drop(rec, reason, what);
        return;
    }

    /* what the horizon's sweep says if the retry has not run by then */

    rec->last_reason = reason;
    rec->last_what = what;

    delay = ngx_graph_notify_graph_backoff(++rec->attempts);

    delay = ngx_min(delay, (ngx_msec_t) left * 1000);

    ngx_graph_notify_graph_retry(rec, delay);
}


static void
ngx_graph_notify_graph_retry(ngx_graph_notify_record_t *rec,
    ngx_msec_t delay)
{
    ngx_graph_notify_graph_t  *g;

    g = ngx_graph_notify_graph;

    if (rec->state == NGX_GRAPH_NOTIFY_QUEUED) {
        ngx_queue_remove(&rec->link);
    }

    if (rec->state != NGX_GRAPH_NOTIFY_DELAYED) {
        g->waiting++;
    }

    rec->state = NGX_GRAPH_NOTIFY_DELAYED;

    if (rec->timer.timer_set) {
        ngx_del_timer(&rec->timer);
    }

    ngx_add_timer(&rec->timer, delay ? delay : 1);

    ngx_graph_notify_graph_gauges();
}


static void
ngx_graph_notify_graph_timer(ngx_event_t *ev)
{
    ngx_graph_notify_record_t  *rec;

    rec = (ngx_graph_notify_record_t *)
              ((u_char *) ev - offsetof(ngx_graph_notify_record_t, timer));

    ngx_graph_notify_graph_enqueue(rec, 1);
}


static void
ngx_graph_notify_graph_drop(ngx_graph_notify_record_t *rec,
    ngx_graph_notify_record_drop_e reason, const char *what)
{
    ngx_uint_t                 n;
    ngx_queue_t               *q;
    ngx_graph_notify_graph_t  *g;
    ngx_graph_notify_rjob_t   *rj;

    g = ngx_graph_notify_graph;

    ngx_queue_add(&rec->answering, &rec->jobs);
    ngx_queue_init(&rec->jobs);

    n = 0;

    while (!ngx_queue_empty(&rec->answering)) {
        q = ngx_queue_head(&rec->answering);
        rj = ngx_queue_data(q, ngx_graph_notify_rjob_t, queue);
        ngx_graph_notify_graph_finish_job(rj, 1);
        n++;
    }

    ngx_graph_notify_graph_drop_log(reason, &rec->node->sn.str, n, what,
                                    rec->last_status,
                                    ngx_time() - rec->first_seen);

    ngx_graph_notify_stat_inc(g->queue, records_dropped[reason]);

    ngx_graph_notify_graph_free_record(rec);
}


static ngx_msec_t
ngx_graph_notify_graph_backoff(ngx_uint_t attempts)
{
    ngx_msec_t  delay;

    /* exponential, with +-25 % jitter so that retries do not align */

    delay = NGX_GRAPH_NOTIFY_BACKOFF_MIN;

    while (--attempts && delay < NGX_GRAPH_NOTIFY_BACKOFF_MAX) {
        delay *= 2;
    }

    delay = ngx_min(delay, NGX_GRAPH_NOTIFY_BACKOFF_MAX);

    return delay - delay / 4 + (ngx_msec_t) ngx_random() % (delay / 2 + 1);
}


static void
ngx_graph_notify_graph_answered(ngx_graph_notify_answer_e answer)
{
    ngx_graph_notify_stat_inc(ngx_graph_notify_graph->queue,
                              graph_answers[answer]);
}


static void
ngx_graph_notify_graph_gauges(void)
{
    ngx_graph_notify_graph_t  *g;

    g = ngx_graph_notify_graph;

    g->stats->records_active = g->records;
    g->stats->records_backlog = g->backlog;
    g->stats->records_waiting = g->waiting;
    g->stats->requests_running = g->running;
}


void
ngx_graph_notify_graph_poll(void)
{
    ngx_graph_notify_graph_t  *g;

    /* the helper's backstop poll: a missed wake-up costs a second at most */

    g = ngx_graph_notify_graph;

    if (g == NULL) {
        return;
    }

    if (!g->pump.posted) {
        ngx_post_event(&g->pump, &ngx_posted_events);
    }

    ngx_graph_notify_graph_sweep(g);
    ngx_graph_notify_graph_publish(g);

    if (g->started && ngx_time() - g->maintained >= 3600) {
        ngx_graph_notify_index_maintain();
        g->maintained = ngx_time();
    }
}


static void
ngx_graph_notify_graph_sweep(ngx_graph_notify_graph_t *g)
{
    time_t                      now, horizon;
    ngx_uint_t                  i;
    const char                 *what;
    ngx_queue_t                *q, *next, *tq, *tnext;
    ngx_graph_notify_rjob_t    *rj;
    ngx_graph_notify_tenant_t  *t;
    ngx_graph_notify_record_t  *rec;

    now = ngx_time();

    if (now == g->swept) {
        return;
    }

    g->swept = now;

    for (i = 0; i < NGX_GRAPH_NOTIFY_RECORD_N; i++) {
        if (g->drops[i].records
            && now - g->drops[i].logged >= NGX_GRAPH_NOTIFY_DROP_LOG)
        {
            ngx_graph_notify_graph_drop_summary(i, now);
        }
    }

    /* fail closed: nothing expires while the client cannot start */

    if (!g->started) {
        return;
    }

    /*
     * The record horizon, whatever an item waits for: a token, the end
     * of a pause, or its turn in the tenant's backlog.
     */

    horizon = g->gmcf->record_horizon;

    for (tq = ngx_queue_head(&g->tenants);
         tq != ngx_queue_sentinel(&g->tenants);
         tq = tnext)
    {
        tnext = ngx_queue_next(tq);
        t = ngx_queue_data(tq, ngx_graph_notify_tenant_t, link);

        what = t->no_token ? "no token for its tenant"
               : t->paused ? "its tenant is paused"
               : "not fetched in time";

        while (!ngx_queue_empty(&t->backlog)) {
            rj = ngx_queue_data(ngx_queue_head(&t->backlog),
                                ngx_graph_notify_rjob_t, queue);

            if (rj->received + horizon > now) {
                break;
            }

            t->backlogged--;
            g->backlog--;

            ngx_graph_notify_graph_drop_log(NGX_GRAPH_NOTIFY_RECORD_EXPIRED,
                                            NULL, 1, what, 0,
                                            now - rj->received);
            ngx_graph_notify_graph_finish_job(rj, 1);
            ngx_graph_notify_stat_inc(g->queue,
                           records_dropped[NGX_GRAPH_NOTIFY_RECORD_EXPIRED]);
        }

        for (q = ngx_queue_head(&t->ready);
             q != ngx_queue_sentinel(&t->ready);
             q = next)
        {
            next = ngx_queue_next(q);
            rec = ngx_queue_data(q, ngx_graph_notify_record_t, link);

            if (rec->first_seen + horizon > now) {
                continue;
            }

            /*
             * The last retry is timed to the horizon and may be waiting
             * here for its turn: the record is dropped for what failed.
             */

            if (rec->attempts) {
                ngx_graph_notify_graph_drop(rec, rec->last_reason,
                                            rec->last_what);

            } else {
                ngx_graph_notify_graph_drop(rec,
                                            NGX_GRAPH_NOTIFY_RECORD_EXPIRED,
                                            what);
            }
        }

        /* a tenant without work is forgotten, its token with it */

        if (t->records == 0 && t->backlogged == 0 && t->running == 0
            && (!t->paused
                || (ngx_msec_int_t) (t->paused_until - ngx_current_msec) <= 0)
            && now - t->active >= NGX_GRAPH_NOTIFY_TENANT_IDLE)
        {
            ngx_graph_notify_graph_tenant_free(t, 1);
        }
    }

    ngx_graph_notify_graph_gauges();
}


static void
ngx_graph_notify_graph_publish(ngx_graph_notify_graph_t *g)
{
    ngx_uint_t                       n, no_token, paused, state;
    ngx_queue_t                     *q;
    ngx_graph_notify_tenant_t       *t;
    ngx_graph_notify_tenant_view_t   views[NGX_GRAPH_NOTIFY_TENANT_VIEWS];

    /* tenants in trouble or with a backlog, for the status page */

    n = 0;
    no_token = 0;
    paused = 0;

    for (q = ngx_queue_head(&g->tenants);
         q != ngx_queue_sentinel(&g->tenants);
         q = ngx_queue_next(q))
    {
        t = ngx_queue_data(q, ngx_graph_notify_tenant_t, link);

        if (t->paused
            && (ngx_msec_int_t) (t->paused_until - ngx_current_msec) > 0)
        {
            state = NGX_GRAPH_NOTIFY_TENANT_PAUSED;
            paused++;

        } else if (t->no_token) {
            state = NGX_GRAPH_NOTIFY_TENANT_NO_TOKEN;
            no_token++;

        } else {
            state = NGX_GRAPH_NOTIFY_TENANT_OK;
        }

        if ((state != NGX_GRAPH_NOTIFY_TENANT_OK || t->backlogged)
            && n < NGX_GRAPH_NOTIFY_TENANT_VIEWS)
        {
            ngx_memcpy(views[n].id, t->sn.str.data, 36);
            views[n].id[36] = '\0';
            views[n].state = state;
            views[n].records = t->records;
            views[n].backlog = t->backlogged;
            n++;
        }
    }

    ngx_shmtx_lock(&g->queue->shpool->mutex);

    g->stats->tenants = g->ntenants;
    g->stats->tenants_no_token = no_token;
    g->stats->tenants_paused = paused;
    g->stats->tenant_views = n;
    ngx_memcpy(g->stats->tenant_view, views,
               n * sizeof(ngx_graph_notify_tenant_view_t));

    ngx_shmtx_unlock(&g->queue->shpool->mutex);
}


static void
ngx_graph_notify_graph_stop(void *data)
{
    ngx_graph_notify_graph_t *g = data;

    ngx_graph_notify_record_t  *rec;

    /*
     * The process exits: records go first, while the index, the token
     * client and the HTTP client, whose cleanups were added before this
     * one, still exist; their items go back to the queue.
     */

    while (!ngx_queue_empty(&g->all)) {
        rec = ngx_queue_data(ngx_queue_head(&g->all),
                             ngx_graph_notify_record_t, all);

        if (rec->req) {
            rec->req = NULL;
            g->running--;
            rec->tenant->running--;
        }

        ngx_graph_notify_graph_free_record(rec);
    }

    g->started = 0;
}


static void
ngx_graph_notify_graph_cleanup(void *data)
{
    ngx_graph_notify_graph_t *g = data;

    ngx_graph_notify_rjob_t    *rj;
    ngx_graph_notify_tenant_t  *t;

    /* the rest held, by reference only, goes back to the queue */

    while (!ngx_queue_empty(&g->tenants)) {
        t = ngx_queue_data(ngx_queue_head(&g->tenants),
                           ngx_graph_notify_tenant_t, link);

        while (!ngx_queue_empty(&t->backlog)) {
            rj = ngx_queue_data(ngx_queue_head(&t->backlog),
                                ngx_graph_notify_rjob_t, queue);
            t->backlogged--;
            g->backlog--;
            ngx_graph_notify_graph_finish_job(rj, 0);
        }

        ngx_graph_notify_graph_tenant_free(t, 0);
    }

    if (g->start.timer_set) {
        ngx_del_timer(&g->start);
    }

    if (g->pump.timer_set) {
        ngx_del_timer(&g->pump);
    }

    if (g->pump.posted) {
        ngx_delete_posted_event(&g->pump);
    }

    if (g->flush.timer_set) {
        ngx_del_timer(&g->flush);
    }

    if (g->flush.posted) {
        ngx_delete_posted_event(&g->flush);
    }

    ngx_graph_notify_graph = NULL;
}
