# The helper process: started and respawned by NGINX, never loses an item.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

master_on();
workers(2);
no_shuffle();


run_tests();

__DATA__

=== TEST 1: the helper is NGINX's cache manager process and writes the items
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body()
--- error_code: 202
--- error_log
graph_notify: helper started, output
--- post_check
my @l = wait_lines(1);
is(scalar @l, 1, "written");
my $pid = wait_helper_pid();
ok($pid, "helper pid published");
isnt($pid, nginx_pid(), "not the master");
my ($ppid) = read_file("/proc/$pid/stat") =~ /^\d+ \(.*?\) \S (\d+) /;
is($ppid, nginx_pid(), "a child of the master");
SKIP: {
    skip "valgrind shows its own command line", 1 if $ENV{TEST_NGINX_USE_VALGRIND};
    like(read_file("/proc/$pid/cmdline"), qr/cache manager process/, "it is the cache manager");
}



=== TEST 2: a helper killed with SIGKILL is respawned and goes on
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => "r1"))
--- error_code: 202
--- post_check
wait_lines(1);
# synced, so that r1 is done with before the kill
status_is(sub { $_[0]{items}{written} }, 1, "r1 written");
my $old = wait_helper_pid();
kill 'KILL', $old;
my $new = wait_helper_pid($old);
ok($new && $new != $old, "a new helper");
is(status()->{helper}{starts}, 2, "started twice");
is(GraphNotify::http_post("/graph/notify",
   GraphNotify::basic_body(GraphNotify::basic_item(record => "r2")))->{status}, 202, "accepted");
my @l = wait_lines(2);
is(join(",", map { $_->{resourceData}{id} } @l), "r1,r2", "both written, once each");
is(log_count(qr/cache manager process \d+ exited on signal 9/), 1, "NGINX saw it die");



=== TEST 3: while the output cannot be written, items stay queued; a reload fixes it
--- http_config
    graph_notify_zone graph_notify:1m max_items=5;
    graph_notify_path graph_notify_temp;
    graph_notify_output /dev/full;
    graph_notify_client_state secret-1;
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(map { GraphNotify::basic_item(record => "r$_") } 1 .. 3)
--- error_code: 202
--- post_check
my $end = time + 10;
sleep 0.1 while status()->{helper}{outputErrors} < 2 && time < $end;
my $st = status();
cmp_ok($st->{helper}{outputErrors}, '>=', 2, "write failures counted, and retried");
is($st->{queue}{items}, 3, "the items are still queued");
cmp_ok(log_count(qr/graph_notify: writing \d+ bytes to "\/dev\/full" failed, items are kept and retried/), '>=', 1, "logged");

my $res = GraphNotify::http_post("/graph/notify",
    GraphNotify::basic_body(map { GraphNotify::basic_item(record => "s$_") } 1 .. 3));
is($res->{status}, 503, "a batch that does not fit is refused with 503");
is($res->{headers}{'retry-after'}, "10", "with Retry-After");
is(status()->{queue}{items}, 3, "and nothing of it queued");
is(status()->{queueFull}, 1, "counted");
is(log_count(qr/graph_notify: queue full \(3 items, \d+ bytes\), 3 item\(s\) refused with 503/), 1, "logged");

rewrite_conf("/dev/full", "logs/graph_notify.ndjson");
ok(reload_nginx(), "reloaded, a new helper");
my @l = wait_lines(3);
is(join(",", map { $_->{resourceData}{id} } @l), "r1,r2,r3", "the queue survived the reload");
status_is(sub { $_[0]{items}{written} }, 3, "counters survived too");



=== TEST 4: "nginx -s reopen" reopens the output, as logrotate needs
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => "r1"))
--- error_code: 202
--- post_check
wait_lines(1);
my $helper = helper_pid();
rename output_file(), output_file() . ".1" or die $!;
kill 'USR1', nginx_pid();
# the master opens the new file, then each process reopens on its own:
# wait for the helper, the one that writes
ok(wait_for(sub { log_count(qr/ $helper#\d+: reopening logs/) }, 10),
   "the helper reopened its files");
is(GraphNotify::http_post("/graph/notify",
   GraphNotify::basic_body(GraphNotify::basic_item(record => "r2")))->{status}, 202, "accepted");
my @l = wait_lines(1);
is(scalar @l, 1, "one line in the new file");
is($l[0]{resourceData}{id}, "r2", "the new one");
my @old = split /\n/, read_file(output_file() . ".1");
is(scalar @old, 1, "the old file kept its line");



=== TEST 5: a batch larger than the zone is refused whole with 503
--- http_config
    graph_notify_zone graph_notify:256k;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state secret-1;
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(
    map { GraphNotify::basic_item(record => "x" x 1000 . $_) } 1 .. 400)
--- error_code: 503
--- response_headers
Retry-After: 10
--- post_check
my @l = wait_lines(1, 1);
is(scalar @l, 0, "nothing written");
is(status()->{queue}{items}, 0, "nothing queued");
is(status()->{queue}{bytes}, 0, "no bytes held");
