# ngx_graph_notify_module
#
#   make                build build/ngx_http_graph_notify_module.so
#   make test           run the test suite (t/*.t)
#   make test-valgrind  the same suite with NGINX under valgrind
#   make fuzz           the intake's differential fuzz test against jansson
#                       (scripts/fuzz; FUZZ_SECONDS=60 by default)
#   make demo           the main job, against a local Graph simulator
#   make bench          the benchmarks (scripts/bench)
#   make deb            the Debian package, in build/deb (scripts/deb)
#   make deb-smoke      install that package, run it in the system NGINX,
#                       purge it (scripts/deb-smoke; root, changes the system)
#   make contrib-check  syntax of the operations kit in contrib/
#
# NGINX_SRC=/path/to/nginx builds against an upstream source tree instead of
# Debian's nginx-dev; NGINX_BIN is the binary the tests and the demo run.

NGINX_SRC  ?= /usr/share/nginx/src
NGINX_BIN  ?= /usr/sbin/nginx
BUILD      ?= $(CURDIR)/build
MODULE      = $(BUILD)/ngx_http_graph_notify_module.so
SOURCES     = config $(wildcard ngx_graph_notify_module/*.[ch])
PROVE_ARGS ?= -r t/

export NGINX_SRC BUILD

.PHONY: all setup test test-valgrind fuzz demo bench deb deb-smoke \
        contrib-check clean

all: $(MODULE)

$(MODULE): $(SOURCES)
	scripts/build

setup:
	scripts/setup

test: $(MODULE)
	NGINX_BIN=$(NGINX_BIN) MODULE=$(MODULE) scripts/test $(PROVE_ARGS)

test-valgrind: $(MODULE)
	NGINX_BIN=$(NGINX_BIN) MODULE=$(MODULE) scripts/test --valgrind \
	    $(PROVE_ARGS)

fuzz: $(MODULE)
	scripts/fuzz

demo: $(MODULE)
	NGINX_BIN=$(NGINX_BIN) MODULE=$(MODULE) scripts/demo

bench: $(MODULE)
	NGINX_BIN=$(NGINX_BIN) MODULE=$(MODULE) scripts/bench

deb:
	scripts/deb

deb-smoke: deb
	scripts/deb-smoke $(BUILD)/deb/libnginx-mod-http-graph-notify_*.deb

contrib-check: $(MODULE)
	NGINX_BIN=$(NGINX_BIN) MODULE=$(MODULE) scripts/contrib-check

clean:
	rm -rf $(BUILD) t/servroot*
