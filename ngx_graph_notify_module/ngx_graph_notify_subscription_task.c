
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_subscription.h"
#include "ngx_graph_notify_subscription_task.h"


/*
 * Tasks: the units of work against Graph (a listing, a subscription, a
 * deletion, a backfill), paced within the rate budget, a few at once, one
 * request at a time each, retried with backoff; Graph's URLs and replies.
 */


#define NGX_GRAPH_NOTIFY_SUB_RUNNING     4
#define NGX_GRAPH_NOTIFY_SUB_BACKOFF_MIN 1000
#define NGX_GRAPH_NOTIFY_SUB_BACKOFF_MAX (10 * 60 * 1000)
#define NGX_GRAPH_NOTIFY_SUB_PAGES_MAX   10000
/* room for the path and query after Graph's URL */
#define NGX_GRAPH_NOTIFY_SUB_PATH        512


static void ngx_graph_notify_task_timer(ngx_event_t *ev);


void
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


void
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


void
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


ngx_graph_notify_http_t *
ngx_graph_notify_task_request(ngx_graph_notify_task_t *task,
    const char *method, ngx_str_t *url, json_t *body,
    ngx_graph_notify_http_done_pt handler)
{
    ngx_str_t                 name, b;
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
        if (ngx_graph_notify_sub_dump(task->pool, body, &b) != NGX_OK
            || ngx_graph_notify_http_body(req, &b, "application/json")
               != NGX_OK)
        {
            return NULL;
        }

    } else if (ngx_strcmp(method, "POST") == 0) {
        /* an empty body, "Content-Length: 0" */
        ngx_str_null(&b);

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

ngx_int_t
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

ngx_int_t
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


void
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

void
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


ngx_msec_t
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


void
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


/* JSON as a string in a pool, for a request body or an item of the queue */

ngx_int_t
ngx_graph_notify_sub_dump(ngx_pool_t *pool, json_t *json, ngx_str_t *out)
{
    char  *dump;

    dump = json_dumps(json, JSON_COMPACT);
    if (dump == NULL) {
        return NGX_ERROR;
    }

    out->len = ngx_strlen(dump);
    out->data = ngx_pnalloc(pool, out->len);

    if (out->data) {
        ngx_memcpy(out->data, dump, out->len);
    }

    free(dump);

    return out->data ? NGX_OK : NGX_ERROR;
}


json_t *
ngx_graph_notify_sub_json(ngx_str_t *body)
{
    if (body->len == 0) {
        return NULL;
    }

    return json_loadb((char *) body->data, body->len, 0, NULL);
}
