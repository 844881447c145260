
/*
 * Copyright (C) ngx_graph_notify_module authors
 */


#include "ngx_graph_notify_crc32c.h"


#if (defined __x86_64__ && defined __GNUC__)
#define NGX_GRAPH_NOTIFY_CRC32C_SSE42  1
#include <nmmintrin.h>
#else
#define NGX_GRAPH_NOTIFY_CRC32C_SSE42  0
#endif


#define NGX_GRAPH_NOTIFY_CRC32C_POLY   0x82f63b78
#define NGX_GRAPH_NOTIFY_CRC32C_CHECK  0xe3069283     /* of "123456789" */


static uint32_t ngx_graph_notify_crc32c_choose(u_char *p, size_t len);
static uint32_t ngx_graph_notify_crc32c_table(u_char *p, size_t len);
#if (NGX_GRAPH_NOTIFY_CRC32C_SSE42)
static uint32_t ngx_graph_notify_crc32c_sse42(u_char *p, size_t len);
#endif


static uint32_t  ngx_graph_notify_crc32c_tab[256];

static uint32_t (*ngx_graph_notify_crc32c_fn)(u_char *p, size_t len) =
    ngx_graph_notify_crc32c_choose;


uint32_t
ngx_graph_notify_crc32c(u_char *p, size_t len)
{
    return ngx_graph_notify_crc32c_fn(p, len);
}


/*
 * The first call fills the table and picks the instruction if the
 * processor has it and it gives the check value.  Both choices compute
 * the same function, so a second thread choosing meanwhile does no harm.
 */

static uint32_t
ngx_graph_notify_crc32c_choose(u_char *p, size_t len)
{
    uint32_t    c;
    ngx_uint_t  i, k;

    for (i = 0; i < 256; i++) {
        c = (uint32_t) i;

        for (k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ NGX_GRAPH_NOTIFY_CRC32C_POLY : c >> 1;
        }

        ngx_graph_notify_crc32c_tab[i] = c;
    }

    ngx_memory_barrier();

    ngx_graph_notify_crc32c_fn = ngx_graph_notify_crc32c_table;

#if (NGX_GRAPH_NOTIFY_CRC32C_SSE42)

    __builtin_cpu_init();

    if (__builtin_cpu_supports("sse4.2")
        && ngx_graph_notify_crc32c_sse42((u_char *) "123456789", 9)
           == NGX_GRAPH_NOTIFY_CRC32C_CHECK)
    {
        ngx_graph_notify_crc32c_fn = ngx_graph_notify_crc32c_sse42;
    }

#endif

    return ngx_graph_notify_crc32c_fn(p, len);
}


static uint32_t
ngx_graph_notify_crc32c_table(u_char *p, size_t len)
{
    uint32_t  crc;

    crc = 0xffffffff;

    while (len--) {
        crc = ngx_graph_notify_crc32c_tab[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }

    return crc ^ 0xffffffff;
}


#if (NGX_GRAPH_NOTIFY_CRC32C_SSE42)

/* the compiler emits crc32 here only: the rest of the module stays generic */

static __attribute__((target("sse4.2"))) uint32_t
ngx_graph_notify_crc32c_sse42(u_char *p, size_t len)
{
    uint64_t  crc, v;

    crc = 0xffffffff;

    while (len >= 8) {
        ngx_memcpy(&v, p, sizeof(uint64_t));
        crc = _mm_crc32_u64(crc, v);
        p += 8;
        len -= 8;
    }

    while (len--) {
        crc = _mm_crc32_u8((uint32_t) crc, *p++);
    }

    return (uint32_t) crc ^ 0xffffffff;
}

#endif
