
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_subscription.h"
#include "ngx_graph_notify_subscription_conf.h"
#include "ngx_graph_notify_conf_file.h"


/*
 * The directives graph_notify_subscription, graph_notify_subscription_prune
 * and graph_notify_backfill, and what "nginx -t" checks of them against
 * the graph_notify locations; the zone of the subscriptions' status.
 */


#define NGX_GRAPH_NOTIFY_SUB_ZONE        "graph_notify_subscriptions"
#define NGX_GRAPH_NOTIFY_SUB_USERS_MAX   (16 * 1024 * 1024)

/* Graph's limits per resource, minutes */
#define NGX_GRAPH_NOTIFY_SUB_MAX_RECORDS 4230
#define NGX_GRAPH_NOTIFY_SUB_MAX_CONV    1440
#define NGX_GRAPH_NOTIFY_SUB_MAX_OTHER   4320

/* the longest clientState Graph takes */
#define NGX_GRAPH_NOTIFY_SUB_CLIENT_STATE 128


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

    u_char                        *p, *last, *q, *r, *t, *tend;
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

    while (ngx_graph_notify_sub_next(&p, last, ',', &one) == NGX_OK) {
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

    while (ngx_graph_notify_sub_next(&p, last, LF, &id) == NGX_OK) {
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

        while (ngx_graph_notify_sub_next(&t, tend, ',', &v) == NGX_OK) {
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
