
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_subscription.h"
#include "ngx_graph_notify_subscription_state.h"
#include "ngx_graph_notify_subscription_renew.h"
#include "ngx_graph_notify_commit.h"


/*
 * The state file: per subscription its id, expiry and last renewal, and
 * the helper's heartbeat, so that a new helper adopts what the previous
 * one created and knows how long nobody renewed.
 *
 * It is read once, when the helper takes the lock.  Saves are made on the
 * committer's jobs thread (never on the event loop): the state is turned
 * into JSON on the loop, and the thread writes it to a temporary file,
 * syncs it, renames it over the state file and syncs the directory, so
 * that the file on disk is always a whole old or a whole new state.  One
 * save at a time: a save asked for meanwhile is made once after it, with
 * the state as it is then.  A failed save is logged (once a minute at
 * most) and tried again at the next tick; the file keeps the last state
 * saved.  At exit the save in flight is waited for and what changed
 * since is saved.
 */


/* what one save hands to the thread, and what the thread found */
struct ngx_graph_notify_sub_saving_s {
    ngx_graph_notify_commit_job_t   job;
    ngx_graph_notify_subs_t        *subs;
    char                           *dump;
    size_t                          len;
    u_char                         *name;
    u_char                         *tmp;
    u_char                         *dir;
    const char                     *failed;
    ngx_err_t                       err;
    ngx_uint_t                      busy;
};


static char *ngx_graph_notify_sub_dump(ngx_graph_notify_subs_t *m);
static void ngx_graph_notify_sub_save_run(ngx_graph_notify_commit_job_t *job);
static void ngx_graph_notify_sub_saved(ngx_graph_notify_commit_job_t *job);
static void ngx_graph_notify_sub_save_result(ngx_graph_notify_subs_t *m,
    ngx_graph_notify_sub_saving_t *sv);
static void ngx_graph_notify_sub_save_atexit(void);


ngx_int_t
ngx_graph_notify_sub_state_init(ngx_graph_notify_subs_t *m)
{
    u_char                         *p;
    size_t                          len;
    ngx_str_t                      *dir;
    ngx_graph_notify_sub_saving_t  *sv;

    /* not of the cycle's pool: a save in flight may outlive it */

    dir = &m->gmcf->path->name;
    len = sizeof(ngx_graph_notify_sub_saving_t)
          + 2 * m->state_name.len + sizeof(".tmp") + 1 + dir->len + 1;

    sv = ngx_alloc(len, m->log);
    if (sv == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(sv, sizeof(ngx_graph_notify_sub_saving_t));

    sv->subs = m;
    sv->job.run = ngx_graph_notify_sub_save_run;
    sv->job.handler = ngx_graph_notify_sub_saved;
    sv->job.data = sv;

    p = (u_char *) sv + sizeof(ngx_graph_notify_sub_saving_t);

    sv->name = p;
    p = ngx_sprintf(p, "%V%Z", &m->state_name);
    sv->tmp = p;
    p = ngx_sprintf(p, "%V.tmp%Z", &m->state_name);
    sv->dir = p;
    (void) ngx_sprintf(p, "%V%Z", dir);

    m->saving = sv;

    /* the helper leaves with exit(), without module hooks */

    if (ngx_process == NGX_PROCESS_HELPER) {
        (void) atexit(ngx_graph_notify_sub_save_atexit);
    }

    return NGX_OK;
}


/* the helper's cycle goes away: a save in flight frees its own data */

void
ngx_graph_notify_sub_state_cleanup(ngx_graph_notify_subs_t *m)
{
    ngx_graph_notify_sub_saving_t  *sv;

    sv = m->saving;

    if (sv == NULL) {
        return;
    }

    m->saving = NULL;

    if (sv->busy) {
        sv->subs = NULL;
        return;
    }

    ngx_free(sv);
}




void
ngx_graph_notify_sub_load(ngx_graph_notify_subs_t *m, time_t *heartbeat)
{
    json_t                          *root, *arr, *e, *v;
    size_t                           i, len;
    ngx_uint_t                       k;
    json_error_t                     err;
    const char                      *resource, *tenant, *url, *id;
    ngx_graph_notify_sub_t          *s;
    ngx_graph_notify_sub_renewal_t  *r;

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

            r = &s[k].renewal;
            r->at = s[k].renewed;
            r->result = json_integer_value(json_object_get(e, "result"));
            r->status = json_integer_value(json_object_get(e, "status"));
            r->renewals = json_integer_value(json_object_get(e, "renewals"));
            r->recreated = json_integer_value(json_object_get(e,
                                                              "recreated"));

            if (r->result > NGX_GRAPH_NOTIFY_SUB_FAILED) {
                r->result = NGX_GRAPH_NOTIFY_SUB_NONE;
            }

            v = json_object_get(e, "code");
            ngx_graph_notify_sub_copy(r->code, NGX_GRAPH_NOTIFY_SUB_CODE,
                                      json_is_string(v) ? json_string_value(v)
                                                        : "",
                                      json_string_length(v));

            v = json_object_get(e, "message");
            ngx_graph_notify_sub_copy(r->message, NGX_GRAPH_NOTIFY_SUB_MESSAGE,
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
    char                           *dump;
    ngx_graph_notify_sub_saving_t  *sv;

    sv = m->saving;

    if (!m->locked || !m->dirty || sv == NULL) {
        return;
    }

    if (sv->busy) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, m->log, 0,
                       "graph_notify: subscription state save deferred, "
                       "one is in flight");
        m->save_again = 1;
        return;
    }

    dump = ngx_graph_notify_sub_dump(m);
    if (dump == NULL) {
        ngx_log_error(NGX_LOG_ALERT, m->log, 0,
                      "graph_notify: no memory for the subscription state");
        return;
    }

    /* changes from now on are for the next save */

    m->dirty = 0;
    m->save_again = 0;

    sv->dump = dump;
    sv->len = ngx_strlen(dump);
    sv->failed = NULL;
    sv->err = 0;
    sv->busy = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, m->log, 0,
                   "graph_notify: subscription state save started, "
                   "heartbeat %T", m->heartbeat);

    ngx_graph_notify_commit_post(&sv->job);
}


static char *
ngx_graph_notify_sub_dump(ngx_graph_notify_subs_t *m)
{
    char                    *dump;
    json_t                  *root, *arr, *e;
    ngx_uint_t               i;
    ngx_graph_notify_sub_t  *s;

    dump = NULL;

    root = json_object();
    arr = json_array();

    if (root == NULL || arr == NULL
        || json_object_set_new(root, "heartbeat",
                               json_integer(m->heartbeat)) != 0
        || json_object_set(root, "subscriptions", arr) != 0)
    {
        goto done;
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
                      "result", (int) s[i].renewal.result,
                      "status", (int) s[i].renewal.status,
                      "code", (char *) s[i].renewal.code,
                      "message", (char *) s[i].renewal.message,
                      "renewals", (json_int_t) s[i].renewal.renewals,
                      "recreated", (json_int_t) s[i].renewal.recreated);

        if (e == NULL || json_array_append_new(arr, e) != 0) {
            goto done;
        }
    }

    dump = json_dumps(root, JSON_COMPACT);

done:

    json_decref(arr);
    json_decref(root);

    return dump;
}


/* on the thread: only the job's own data, no logging */

static void
ngx_graph_notify_sub_save_run(ngx_graph_notify_commit_job_t *job)
{
    ngx_graph_notify_sub_saving_t *sv = job->data;

    char      *p;
    size_t     left;
    ssize_t    n;
    ngx_fd_t   fd;

    /* whole or not at all: a temporary file, synced, renamed, dir synced */

    fd = ngx_open_file(sv->tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        sv->err = ngx_errno;
        sv->failed = ngx_open_file_n;
        goto done;
    }

    p = sv->dump;
    left = sv->len;

    while (left) {
        n = write(fd, p, left);

        if (n == -1) {
            if (ngx_errno == NGX_EINTR) {
                continue;
            }

            sv->err = ngx_errno;
            sv->failed = "write()";
            break;
        }

        p += n;
        left -= n;
    }

    if (sv->failed == NULL && fsync(fd) == -1) {
        sv->err = ngx_errno;
        sv->failed = "fsync()";
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR && sv->failed == NULL) {
        sv->err = ngx_errno;
        sv->failed = ngx_close_file_n;
    }

    if (sv->failed) {
        (void) ngx_delete_file(sv->tmp);
        goto done;
    }

    if (ngx_rename_file(sv->tmp, sv->name) == NGX_FILE_ERROR) {
        sv->err = ngx_errno;
        sv->failed = ngx_rename_file_n;
        (void) ngx_delete_file(sv->tmp);
        goto done;
    }

    /* the rename itself is on disk only once the directory is synced */

    fd = ngx_open_file(sv->dir, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        sv->err = ngx_errno;
        sv->failed = ngx_open_file_n;
        goto done;
    }

    if (fsync(fd) == -1) {
        sv->err = ngx_errno;
        sv->failed = "fsync()";
    }

    (void) ngx_close_file(fd);

done:

    free(sv->dump);
    sv->dump = NULL;
}


/* back on the event loop */

static void
ngx_graph_notify_sub_saved(ngx_graph_notify_commit_job_t *job)
{
    ngx_graph_notify_sub_saving_t *sv = job->data;

    ngx_graph_notify_subs_t  *m;

    sv->busy = 0;
    m = sv->subs;

    if (m == NULL) {
        /* the cycle went away meanwhile */
        ngx_free(sv);
        return;
    }

    ngx_graph_notify_sub_save_result(m, sv);

    /* asked for meanwhile: once more, with the state as it is now */

    if (m->save_again && sv->failed == NULL) {
        ngx_graph_notify_sub_save(m);
    }
}


static void
ngx_graph_notify_sub_save_result(ngx_graph_notify_subs_t *m,
    ngx_graph_notify_sub_saving_t *sv)
{
    time_t  now;

    now = ngx_time();

    if (sv->failed == NULL) {
        m->saved = now;

        if (m->save_failures) {
            ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                          "graph_notify: the subscription state \"%s\" is "
                          "saved again", sv->name);
            m->save_failures = 0;
        }

        return;
    }

    /* tried again at the next tick; the file keeps the last state saved */

    m->dirty = 1;
    m->save_again = 0;

    if (m->save_failures++ == 0 || now - m->save_logged >= 60) {
        ngx_log_error(NGX_LOG_CRIT, m->log, sv->err,
                      "graph_notify: saving the subscription state \"%s\" "
                      "failed (%s, %ui time(s) in a row), the file keeps "
                      "the last state saved, next try in a second",
                      sv->name, sv->failed, m->save_failures);
        m->save_logged = now;
    }
}


/*
 * At exit (a graceful stop or a reload ends the helper): the save in
 * flight is waited for, and what changed since is saved here, as the
 * process serves nothing any more.
 */

void
ngx_graph_notify_sub_state_exit(void)
{
    char                           *dump;
    ngx_graph_notify_subs_t        *m;
    ngx_graph_notify_sub_saving_t  *sv;

    m = ngx_graph_notify_subs;

    if (m == NULL || m->saving == NULL || !m->locked) {
        return;
    }

    sv = m->saving;

    if (sv->busy) {
        ngx_graph_notify_commit_wait(&sv->job);
        sv->busy = 0;
        ngx_graph_notify_sub_save_result(m, sv);
    }

    if (!m->dirty) {
        return;
    }

    dump = ngx_graph_notify_sub_dump(m);
    if (dump == NULL) {
        return;
    }

    m->dirty = 0;

    sv->dump = dump;
    sv->len = ngx_strlen(dump);
    sv->failed = NULL;
    sv->err = 0;

    ngx_graph_notify_sub_save_run(&sv->job);
    ngx_graph_notify_sub_save_result(m, sv);
}


static void
ngx_graph_notify_sub_save_atexit(void)
{
    if (ngx_process == NGX_PROCESS_HELPER) {
        ngx_graph_notify_sub_state_exit();
    }
}
