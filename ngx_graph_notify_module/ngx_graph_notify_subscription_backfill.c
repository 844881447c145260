
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_subscription.h"
#include "ngx_graph_notify_subscription_backfill.h"
#include "ngx_graph_notify_subscription_task.h"


/*
 * Backfill: after a gap in call-record notifications (the helper was down,
 * a subscription was lost, Graph says it missed some), the call records of
 * the gap are listed and those not written yet are pushed onto the queue
 * as Graph would have notified them.
 */


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
} ngx_graph_notify_backfill_t;


static void ngx_graph_notify_backfill_start(ngx_graph_notify_task_t *task,
    ngx_str_t *bearer);
static void ngx_graph_notify_backfill_response(ngx_graph_notify_http_t *req);
static ngx_int_t ngx_graph_notify_backfill_page(
    ngx_graph_notify_backfill_t *b, json_t *value);


void
ngx_graph_notify_backfill_request(ngx_graph_notify_subs_t *m,
    ngx_graph_notify_sub_t *s, time_t from)
{
    ngx_uint_t                     i;
    ngx_graph_notify_backfill_t   *b, **bp;

    if (m->backfills.elts == NULL
        && ngx_array_init(&m->backfills, m->cycle->pool, 4,
                          sizeof(ngx_graph_notify_backfill_t *))
           != NGX_OK)
    {
        return;
    }

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

        rc = ngx_graph_notify_sub_dump(pool, line, &entries[n].line);
        json_decref(line);

        if (rc != NGX_OK) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

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


/* the next page's links kept when the process exits */

void
ngx_graph_notify_backfill_cleanup(ngx_graph_notify_subs_t *m)
{
    ngx_uint_t                     i;
    ngx_graph_notify_backfill_t  **b;

    b = m->backfills.elts;

    for (i = 0; i < m->backfills.nelts; i++) {
        if (b[i]->next.len) {
            ngx_free(b[i]->next.data);
        }
    }
}
