
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify.h"
#include "ngx_graph_notify_conf_file.h"


/* a file that holds a secret is a line: anything this large is not one */
#define NGX_GRAPH_NOTIFY_SECRET_FILE_MAX  (64 * 1024)


char *
ngx_graph_notify_conf_file(ngx_conf_t *cf, ngx_str_t *name, size_t max,
    ngx_str_t *text)
{
    u_char           *buf;
    off_t             size;
    ssize_t           n;
    ngx_str_t         full;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    full = *name;

    if (ngx_conf_full_name(cf->cycle, &full, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = full;
    file.log = cf->log;

    file.fd = ngx_open_file(full.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &full);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        size = -1;

    } else {
        size = ngx_file_size(&fi);
    }

    if (size < 0 || (size_t) size > max) {
        (void) ngx_close_file(file.fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is too large or unreadable", &full);
        return NGX_CONF_ERROR;
    }

    buf = ngx_pnalloc(cf->temp_pool, (size_t) size + 1);
    if (buf == NULL) {
        (void) ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&file, buf, (size_t) size, 0);

    if (ngx_close_file(file.fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", &full);
    }

    if (n == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    buf[n] = '\0';

    text->data = buf;
    text->len = n;

    return NGX_CONF_OK;
}


char *
ngx_graph_notify_conf_secret(ngx_conf_t *cf, ngx_str_t *value,
    ngx_str_t *secret, size_t max, char *what)
{
    u_char     *p;
    ngx_str_t   name, text;

    if (ngx_strncmp(value->data, "file:", 5) != 0) {
        *secret = *value;
        goto check;
    }

    name.data = value->data + 5;
    name.len = value->len - 5;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_graph_notify_conf_file(cf, &name, NGX_GRAPH_NOTIFY_SECRET_FILE_MAX,
                                   &text)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    p = text.data + text.len;

    while (p > text.data && (p[-1] == LF || p[-1] == CR)) {
        p--;
    }

    if (ngx_strlchr(text.data, p, LF) != NULL
        || ngx_strlchr(text.data, p, CR) != NULL)
    {
        ngx_explicit_memzero(text.data, text.len);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s file \"%V\" must hold one line", what, &name);
        return NGX_CONF_ERROR;
    }

    /* kept for the cycle; the file's text is wiped from the temporary pool */

    secret->len = p - text.data;
    secret->data = ngx_pnalloc(cf->pool, secret->len + 1);
    if (secret->data == NULL) {
        ngx_explicit_memzero(text.data, text.len);
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(secret->data, text.data, secret->len);
    secret->data[secret->len] = '\0';

    ngx_explicit_memzero(text.data, text.len);

check:

    if (secret->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "empty %s", what);
        return NGX_CONF_ERROR;
    }

    if (secret->len > max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s is longer than %uz characters", what, max);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
