
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_subscription.h"
#include "ngx_graph_notify_subscription_state.h"
#include "ngx_graph_notify_subscription_renew.h"


/*
 * The state file: per subscription its id, expiry and last renewal, and
 * the helper's heartbeat, so that a new helper adopts what the previous
 * one created and knows how long nobody renewed.
 */


void
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


void
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
