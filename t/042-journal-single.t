# The journal without a master process: the single process journals,
# consumes and recovers.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

master_off();
no_shuffle();

$GraphNotify::HTTP_CONFIG =~ s{graph_notify_output [^\n]*;}
                              {graph_notify_output /dev/full;};

run_tests();

__DATA__

=== TEST 1: master_process off: quit and start, killed and start
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @acked = post_items(3, 10, "single");
is(scalar @acked, 30, "30 acked");
ok(wait_for(sub { status()->{helper}{outputErrors} >= 1 }), "the output fails");
is(scalar(nginx_processes()), 1, "one process");
ok(stop_nginx_now('QUIT'), "quit");
ok(start_nginx_again(), "started again");
my @more = post_items(1, 10, "single2");
ok(kill_nginx(), "killed");
rewrite_conf("graph_notify_output /dev/full;", "graph_notify_output logs/graph_notify.ndjson;");
ok(start_nginx_again(), "started again");
check_once([@acked, @more], "single process");
cmp_ok(status()->{journal}{recovered}, '>=', 40, "recovered");
stop_nginx_now('QUIT');
