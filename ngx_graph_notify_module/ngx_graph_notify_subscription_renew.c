
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_subscription.h"
#include "ngx_graph_notify_subscription_renew.h"
#include "ngx_graph_notify_subscription_task.h"
#include "ngx_graph_notify_subscription_state.h"
#include "ngx_graph_notify_subscription_backfill.h"


/*
 * One subscription: created, renewed at 50-75 % of its lifetime,
 * reauthorized, given a new encryption key, created again when Graph lost
 * it; what happened is shown on the status page.
 */


static void ngx_graph_notify_sub_response(ngx_graph_notify_http_t *req);
static void ngx_graph_notify_sub_ok(ngx_graph_notify_sub_t *s, json_t *obj,
    ngx_uint_t status, time_t now);
static void ngx_graph_notify_sub_failed(ngx_graph_notify_sub_t *s,
    ngx_graph_notify_http_t *req, const char *what);
static int64_t ngx_graph_notify_sub_parse_time(const char *s);


void
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
    u_char                     *p, *last, *start;
    long                        status;
    json_t                     *obj;
    time_t                      now;
    ngx_msec_t                  delay;
    ngx_uint_t                  next;
    ngx_graph_notify_sub_t     *s;
    ngx_graph_notify_subs_t    *m;
    ngx_graph_notify_task_t    *task;
    ngx_graph_notify_sub_op_e   op;

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
            ngx_graph_notify_sub_ok(s, obj, status, now);
            s->created = now;

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
            s->renewal.result = NGX_GRAPH_NOTIFY_SUB_OK;
            s->renewal.status = status;

            ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                          "graph_notify: subscription %*s reauthorized",
                          s->id_len, s->id);

            s->op = NGX_GRAPH_NOTIFY_OP_RENEW;
            break;
        }

        /* fall through */

    default: /* RENEW, ROTATE */

        if (obj) {
            ngx_graph_notify_sub_ok(s, obj, status, now);
            s->renewal.renewals++;

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

    if (s->renewal.result == NGX_GRAPH_NOTIFY_SUB_OK && delay == 0) {
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

    s->renewal.at = now;
    ngx_graph_notify_sub_publish(s);

    /* on disk at once: a helper stopped by a reload exits without notice */
    m->dirty = 1;
    ngx_graph_notify_sub_save(m);

    ngx_graph_notify_task_done(task);

    if (s->again) {
        /* a lifecycle event or a new key came meanwhile */
        op = s->again - 1;
        s->again = 0;

        ngx_graph_notify_sub_act(s, op);
        return;
    }

    if (delay || next) {
        /* a retry, or the next step at once (adopt, reauthorize, create) */
        ngx_graph_notify_task_schedule(task, delay);
        return;
    }

    ngx_graph_notify_sub_plan(s);
}


/* created or renewed: Graph's answer is the subscription as it is now */

static void
ngx_graph_notify_sub_ok(ngx_graph_notify_sub_t *s, json_t *obj,
    ngx_uint_t status, time_t now)
{
    /*
     * The outcome first: adopting publishes the id and the expiry under
     * the zone's lock, and a status page read in between would show a
     * healthy subscription without its renewal, or without its lifetime.
     */

    s->renewed = now;
    s->renewed_ms = ngx_graph_notify_sub_now();
    s->renewal.result = NGX_GRAPH_NOTIFY_SUB_OK;
    s->renewal.status = status;
    s->renewal.code[0] = '\0';
    s->renewal.message[0] = '\0';

    ngx_graph_notify_sub_adopt(s, obj);
}


void
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


void
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


/*
 * An operation asked for from outside the renewal schedule (a lifecycle
 * event, a new key): at once, or right after the request in flight.
 */

void
ngx_graph_notify_sub_act(ngx_graph_notify_sub_t *s,
    ngx_graph_notify_sub_op_e op)
{
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


void
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
    s->renewal.recreated++;

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

    ngx_graph_notify_sub_error(req, s->renewal.code, s->renewal.message);

    s->renewal.result = NGX_GRAPH_NOTIFY_SUB_FAILED;
    s->renewal.status = req->status;

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
                  s->renewal.code, s->renewal.message, advice);
}


void
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
    s->shm->renewal = s->renewal;

    if (s->renewed_ms && s->expires_ms > s->renewed_ms) {
        s->shm->lifetime_ms = s->expires_ms - s->renewed_ms;
    }

    ngx_shmtx_unlock(&m->shpool->mutex);
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
