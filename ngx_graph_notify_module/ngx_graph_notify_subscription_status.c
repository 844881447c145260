
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_subscription.h"
#include "ngx_graph_notify_subscription_status.h"


/*
 * The subscriptions on the status page, in the workers: from the zone the
 * helper writes to.
 */


static const char *ngx_graph_notify_sub_verdict(
    ngx_graph_notify_sub_shm_t *e, int64_t now);
static ngx_slab_pool_t *ngx_graph_notify_sub_zone(
    ngx_graph_notify_main_conf_t *gmcf);
static ngx_graph_notify_subs_shm_t *ngx_graph_notify_sub_status_lock(
    ngx_graph_notify_main_conf_t *gmcf, time_t *now, int64_t *now_ms);
static void ngx_graph_notify_sub_status_unlock(
    ngx_graph_notify_main_conf_t *gmcf);


static const char *
ngx_graph_notify_sub_verdict(ngx_graph_notify_sub_shm_t *e, int64_t now)
{
    if (e->renewal.result == NGX_GRAPH_NOTIFY_SUB_FAILED) {
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


/* the zone the helper writes to, if there are subscriptions */

static ngx_slab_pool_t *
ngx_graph_notify_sub_zone(ngx_graph_notify_main_conf_t *gmcf)
{
    if (gmcf->subscriptions == NULL || gmcf->subscriptions->zone == NULL) {
        return NULL;
    }

    return (ngx_slab_pool_t *) gmcf->subscriptions->zone->shm.addr;
}


/* the status of the subscriptions, locked, and the time it is read at */

static ngx_graph_notify_subs_shm_t *
ngx_graph_notify_sub_status_lock(ngx_graph_notify_main_conf_t *gmcf,
    time_t *now, int64_t *now_ms)
{
    ngx_slab_pool_t  *shpool;

    shpool = ngx_graph_notify_sub_zone(gmcf);

    if (shpool == NULL) {
        return NULL;
    }

    *now = ngx_time();
    *now_ms = ngx_graph_notify_sub_now();

    ngx_shmtx_lock(&shpool->mutex);

    return shpool->data;
}


static void
ngx_graph_notify_sub_status_unlock(ngx_graph_notify_main_conf_t *gmcf)
{
    ngx_slab_pool_t  *shpool;

    shpool = ngx_graph_notify_sub_zone(gmcf);

    ngx_shmtx_unlock(&shpool->mutex);
}


size_t
ngx_graph_notify_subscription_status_size(ngx_graph_notify_main_conf_t *gmcf)
{
    if (ngx_graph_notify_sub_zone(gmcf) == NULL) {
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
    ngx_graph_notify_sub_shm_t   *e;
    ngx_graph_notify_subs_shm_t  *sh;
    u_char                        at[sizeof("1970-01-01T00:00:00Z")];

    sh = ngx_graph_notify_sub_status_lock(gmcf, &now, &now_ms);

    if (sh == NULL) {
        return p;
    }

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

        if (e->renewal.at) {
            *ngx_graph_notify_sub_time(at, e->renewal.at) = '\0';
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
                         (time_t) (e->lifetime_ms / 1000), e->renewal.renewals,
                         e->renewal.recreated,
                         e->renewal.at ? at : (u_char *) "",
                         e->renewal.result == NGX_GRAPH_NOTIFY_SUB_OK ? "ok"
                         : e->renewal.result == NGX_GRAPH_NOTIFY_SUB_FAILED
                           ? "failed" : "none",
                         e->renewal.status, e->renewal.code,
                         e->renewal.message,
                         e->notified ? now - e->notified : -1,
                         ngx_graph_notify_sub_verdict(e, now_ms));
    }

    ngx_graph_notify_sub_status_unlock(gmcf);

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

    sh = ngx_graph_notify_sub_status_lock(gmcf, &now, &now_ms);

    if (sh == NULL) {
        return p;
    }

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
                p = ngx_slprintf(p, last, "} %ui\n", e->renewal.renewals);
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

    ngx_graph_notify_sub_status_unlock(gmcf);

    return p;
}
