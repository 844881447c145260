
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_subscription.h"
#include "ngx_graph_notify_subscription_reconcile.h"
#include "ngx_graph_notify_subscription_task.h"
#include "ngx_graph_notify_subscription_state.h"
#include "ngx_graph_notify_subscription_renew.h"
#include "ngx_graph_notify_jwt.h"


/*
 * Reconciliation, once the helper holds the lock: the app's subscriptions
 * are listed per tenant and API version; each declared one adopts the one
 * that matches it (the one of the state file first), the others are
 * created; those that point at this server but are not declared any more
 * are deleted with graph_notify_subscription_prune on.
 */


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


static void ngx_graph_notify_list_start(ngx_graph_notify_task_t *task,
    ngx_str_t *bearer);
static void ngx_graph_notify_list_response(ngx_graph_notify_http_t *req);
static void ngx_graph_notify_list_again(ngx_graph_notify_sub_list_t *l,
    ngx_graph_notify_http_t *req);
static void ngx_graph_notify_list_reconcile(ngx_graph_notify_sub_list_t *l);
static ngx_uint_t ngx_graph_notify_sub_has(ngx_str_t *list, ngx_str_t *v);
static ngx_uint_t ngx_graph_notify_sub_within(ngx_str_t *a, ngx_str_t *b,
    ngx_uint_t *n);
static ngx_uint_t ngx_graph_notify_sub_matches(ngx_graph_notify_sub_t *s,
    json_t *item);
static ngx_uint_t ngx_graph_notify_sub_ours(ngx_graph_notify_subs_t *m,
    json_t *item);
static void ngx_graph_notify_delete_start(ngx_graph_notify_task_t *task,
    ngx_str_t *bearer);
static void ngx_graph_notify_delete_response(ngx_graph_notify_http_t *req);


ngx_int_t
ngx_graph_notify_reconcile_start(ngx_graph_notify_subs_t *m)
{
    ngx_uint_t                    i, j, found;
    ngx_graph_notify_sub_t       *s;
    ngx_graph_notify_sub_list_t  *l;

    /* room for one listing per subscription: the array is never moved */

    if (ngx_array_init(&m->lists, m->cycle->pool, m->subs.nelts,
                       sizeof(ngx_graph_notify_sub_list_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

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
            return NGX_ERROR;
        }

        ngx_memzero(l, sizeof(ngx_graph_notify_sub_list_t));
        l->version = s[i].conf->version;

        ngx_graph_notify_task_init(m, &l->task, &s[i].conf->tenant,
                                   ngx_graph_notify_list_start);
    }

    l = m->lists.elts;

    for (j = 0; j < m->lists.nelts; j++) {
        ngx_graph_notify_task_schedule(&l[j].task, 0);
    }

    return NGX_OK;
}


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

    ngx_graph_notify_list_again(l, NULL);
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

    ngx_graph_notify_list_again(l, req);
}


/* the listing starts over, after the backoff */

static void
ngx_graph_notify_list_again(ngx_graph_notify_sub_list_t *l,
    ngx_graph_notify_http_t *req)
{
    if (l->next.len) {
        ngx_free(l->next.data);
        ngx_str_null(&l->next);
    }

    json_decref(l->items);
    l->items = NULL;
    l->pages = 0;

    ngx_graph_notify_task_retry(&l->task, req);
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
ngx_graph_notify_sub_has(ngx_str_t *list, ngx_str_t *v)
{
    u_char     *p, *last;
    ngx_str_t   item;

    p = list->data;
    last = p + list->len;

    while (ngx_graph_notify_sub_next(&p, last, ',', &item) == NGX_OK) {
        if (item.len == v->len
            && ngx_strncmp(item.data, v->data, v->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* each item of the comma list "a" is one of "b"; "n" counts them */

static ngx_uint_t
ngx_graph_notify_sub_within(ngx_str_t *a, ngx_str_t *b, ngx_uint_t *n)
{
    u_char     *p, *last;
    ngx_str_t   item;

    *n = 0;
    p = a->data;
    last = p + a->len;

    while (ngx_graph_notify_sub_next(&p, last, ',', &item) == NGX_OK) {
        if (!ngx_graph_notify_sub_has(b, &item)) {
            return 0;
        }

        (*n)++;
    }

    return 1;
}


static ngx_uint_t
ngx_graph_notify_sub_matches(ngx_graph_notify_sub_t *s, json_t *item)
{
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

    if (!ngx_graph_notify_sub_within(&theirs, &s->conf->change, &n)
        || !ngx_graph_notify_sub_within(&s->conf->change, &theirs, &mine))
    {
        return 0;
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


/* what a listing holds when the process exits */

void
ngx_graph_notify_reconcile_cleanup(ngx_graph_notify_subs_t *m)
{
    ngx_uint_t                    i;
    ngx_graph_notify_sub_list_t  *l;

    l = m->lists.elts;

    for (i = 0; i < m->lists.nelts; i++) {
        json_decref(l[i].items);

        if (l[i].next.len) {
            ngx_free(l[i].next.data);
        }
    }
}
