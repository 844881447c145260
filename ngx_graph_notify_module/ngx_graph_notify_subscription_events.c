
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_subscription.h"
#include "ngx_graph_notify_subscription_events.h"
#include "ngx_graph_notify_subscription_task.h"
#include "ngx_graph_notify_subscription_renew.h"
#include "ngx_graph_notify_subscription_backfill.h"


/*
 * Lifecycle events (reauthorizationRequired, subscriptionRemoved, missed),
 * seen by the helper in the items it takes from the queue, and the time of
 * each subscription's last notification.
 */


static void ngx_graph_notify_sub_event(ngx_graph_notify_subs_t *m,
    ngx_str_t *id, ngx_str_t *event);
static void ngx_graph_notify_sub_hand_over(ngx_graph_notify_subs_t *m,
    ngx_str_t *id, ngx_str_t *event);


void
ngx_graph_notify_subscription_item(ngx_str_t *line)
{
    u_char                   *p, *last;
    json_t                   *item;
    ngx_str_t                 id, event;
    ngx_graph_notify_sub_t   *s;
    ngx_graph_notify_subs_t  *m;

    static const char  key[] = "\"subscriptionId\":\"";

    m = ngx_graph_notify_subs;

    if (m == NULL) {
        return;
    }

    last = line->data + line->len;

    p = ngx_strlcasestrn(line->data, last, (u_char *) key, sizeof(key) - 2);
    if (p == NULL) {
        return;
    }

    id.data = p + sizeof(key) - 1;

    for (p = id.data; p < last && *p != '"'; p++) { /* void */ }

    id.len = p - id.data;

    if (ngx_strlcasestrn(line->data, last, (u_char *) "\"kind\":\"lifecycle\"",
                         sizeof("\"kind\":\"lifecycle\"") - 2) == NULL)
    {
        if (!m->locked
            || ngx_strlcasestrn(line->data, last,
                                (u_char *) "\"backfill\":true",
                                sizeof("\"backfill\":true") - 2) != NULL)
        {
            return;
        }

        s = ngx_graph_notify_sub_find(&id);

        if (s) {
            s->notified = ngx_time();
            s->shm->notified = s->notified;
        }

        return;
    }

    item = json_loadb((char *) line->data, line->len, 0, NULL);

    event.data = (u_char *) json_string_value(json_object_get(item,
                                                      "lifecycleEvent"));
    event.len = json_string_length(json_object_get(item, "lifecycleEvent"));

    if (event.data) {
        if (m->locked) {
            ngx_graph_notify_sub_event(m, &id, &event);

        } else {
            ngx_graph_notify_sub_hand_over(m, &id, &event);
        }
    }

    json_decref(item);
}


static void
ngx_graph_notify_sub_event(ngx_graph_notify_subs_t *m, ngx_str_t *id,
    ngx_str_t *event)
{
    ngx_int_t                op;
    ngx_graph_notify_sub_t  *s;

    s = ngx_graph_notify_sub_find(id);

    if (s == NULL) {
        ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                      "graph_notify: lifecycle event \"%V\" for "
                      "subscription %V, which is not declared", event, id);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                  "graph_notify: lifecycle event \"%V\" for subscription "
                  "%V to \"%V\" of tenant %V", event, id, &s->conf->resource,
                  &s->conf->tenant);

#define ngx_graph_notify_is(name)                                             \
    (event->len == sizeof(name) - 1                                           \
     && ngx_strncmp(event->data, name, sizeof(name) - 1) == 0)

    if (ngx_graph_notify_is("reauthorizationRequired")) {
        /* renewing reauthorizes too; POST .../reauthorize if refused */
        s->reauthorize = 1;
        op = NGX_GRAPH_NOTIFY_OP_RENEW;

    } else if (ngx_graph_notify_is("subscriptionRemoved")) {
        op = NGX_GRAPH_NOTIFY_OP_CREATE;

    } else {
        op = -1;

        if (ngx_graph_notify_is("missed") && s->conf->call_records) {
            ngx_graph_notify_backfill_request(m, s,
                                              s->renewed ? s->renewed
                                                         : ngx_time());
        }
    }

#undef ngx_graph_notify_is

    if (op >= 0) {
        ngx_graph_notify_sub_act(s, op);
    }
}


/*
 * While two helpers overlap (a reload, a binary upgrade), a lifecycle
 * event may reach the one that waits for the lock: it is handed to the one
 * that holds it through a file in their common directory.
 */

static void
ngx_graph_notify_sub_hand_over(ngx_graph_notify_subs_t *m, ngx_str_t *id,
    ngx_str_t *event)
{
    u_char    *p;
    ssize_t    n;
    ngx_fd_t   fd;
    u_char     buf[NGX_GRAPH_NOTIFY_SUB_ID + 64];

    if (id->len == 0 || id->len >= NGX_GRAPH_NOTIFY_SUB_ID
        || event->len == 0 || event->len > 48
        || ngx_strlchr(id->data, id->data + id->len, ' ') != NULL
        || ngx_strlchr(event->data, event->data + event->len, LF) != NULL)
    {
        return;
    }

    p = ngx_sprintf(buf, "%V %V\n", id, event);

    fd = ngx_open_file(m->events_name.data, NGX_FILE_APPEND,
                       NGX_FILE_CREATE_OR_OPEN, NGX_FILE_DEFAULT_ACCESS);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, m->log, ngx_errno,
                      "graph_notify: " ngx_open_file_n " \"%V\" failed, "
                      "lifecycle event \"%V\" for subscription %V is not "
                      "acted on", &m->events_name, event, id);
        return;
    }

    n = write(fd, buf, p - buf);

    (void) ngx_close_file(fd);

    ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                  "graph_notify: lifecycle event \"%V\" for subscription %V "
                  "handed to the helper that acts on subscriptions%s",
                  event, id, n == p - buf ? "" : " failed");
}


void
ngx_graph_notify_sub_take_over(ngx_graph_notify_subs_t *m)
{
    u_char           *p, *last, *sp, *nl;
    ssize_t           n;
    ngx_str_t         id, event;
    ngx_file_t        file;
    ngx_file_info_t   fi;
    u_char            tmp[NGX_MAX_PATH];
    u_char            buf[16384];

    if (ngx_file_info(m->events_name.data, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) == 0)
    {
        return;
    }

    /* taken whole: a helper that hands over later starts a new file */

    ngx_snprintf(tmp, sizeof(tmp), "%V.taken%Z", &m->events_name);

    if (ngx_rename_file(m->events_name.data, tmp) == NGX_FILE_ERROR) {
        return;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.log = m->log;
    file.name.data = tmp;
    file.name.len = ngx_strlen(tmp);
    file.fd = ngx_open_file(tmp, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        return;
    }

    n = ngx_read_file(&file, buf, sizeof(buf), 0);

    (void) ngx_close_file(file.fd);
    (void) ngx_delete_file(tmp);

    if (n <= 0) {
        return;
    }

    p = buf;
    last = buf + n;

    while (p < last) {
        nl = ngx_strlchr(p, last, LF);

        if (nl == NULL) {
            break;
        }

        sp = ngx_strlchr(p, nl, ' ');

        if (sp) {
            id.data = p;
            id.len = sp - p;
            event.data = sp + 1;
            event.len = nl - sp - 1;

            ngx_graph_notify_sub_event(m, &id, &event);
        }

        p = nl + 1;
    }
}
