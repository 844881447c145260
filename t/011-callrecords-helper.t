# Call records with a real helper process: sign-in failures, crashes, reloads.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

master_on();
workers(2);
no_shuffle();
GraphNotify::start_sim('--cert', GraphNotify::data_file('app-test.crt'));

$GraphNotify::HTTP_CONFIG = $GraphNotify::GRAPH_HTTP_CONFIG;

our @R = map { sprintf "b2000000-0000-4000-8000-%012d", $_ } 1 .. 5;


run_tests();

__DATA__

=== TEST 1: a wrong client secret: a clear error, items kept; fixed by a reload
--- http_config eval
GraphNotify::graph_config(secret => "not-the-secret")
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $main::R[0], sessions => 1);
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => $main::R[0]))
--- error_code: 202
--- post_check
ok(wait_for(sub { status()->{graph}{token}{failing} }), "the sign-in fails");
my $st = status();
is($st->{graph}{token}{lastError}, "invalid_client AADSTS7000215", "with the identity platform's reason");
is($st->{queue}{items}, 1, "the item is kept");
cmp_ok(log_count(qr/graph_notify: .*invalid_client AADSTS7000215/), '>=', 1, "logged");
is(log_count(qr/not-the-secret/), 0, "the secret is not logged");
unlike(status_text(), qr/not-the-secret/, "nor on the status page");
unlike(status_text("?format=prometheus"), qr/not-the-secret/, "in either format");
rewrite_conf("graph_notify_client_secret not-the-secret;",
    "graph_notify_client_secret file:$ENV{TEST_NGINX_TOP}/t/data/client-secret.txt;");
ok(reload_nginx(), "reloaded");
my @r = record_lines(1);
is(scalar @r, 1, "written after the fix");
status_is(sub { $_[0]{queue}{items} }, 0, "and gone from the queue");
ok(!status()->{graph}{token}{failing}, "no longer failing");



=== TEST 2: a helper killed with SIGKILL mid-fetch: fetched again, written once
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $main::R[1], sessions => 1);
GraphNotify::sim_faults(latency_ms => 1500);
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => $main::R[1]))
--- error_code: 202
--- post_check
# at the simulator, which counts a request once it has answered it
ok(wait_for(sub { sim_stats()->{in_flight_graph} > 0 }), "a fetch in flight");
my $old = helper_pid();
kill 'KILL', $old;
ok(wait_helper_pid($old), "a new helper");
record_lines(1, 30);
status_is(sub { $_[0]{queue}{items} }, 0, "done");
is(scalar(record_lines(1)), 1, "written once");
is(sim_count('record_get', $main::R[1]), 2, "fetched again after the crash");
cmp_ok(status()->{helper}{leaseReclaims}, '>=', 1, "taken back from the dead helper");
GraphNotify::sim_faults();



=== TEST 3: "nginx -s reload" with fetches in flight: nothing lost, nothing doubled
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $_, sessions => 70) for @main::R;
GraphNotify::sim_faults(latency_ms => 700);
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(map { GraphNotify::basic_item(record => $_) } @main::R)
--- error_code: 202
--- post_check
ok(wait_for(sub { (status()->{graph}{running} // 0) > 0 }), "fetches in flight");
ok(reload_nginx(), "reloaded");
record_lines(5, 40);
status_is(sub { $_[0]{queue}{items} }, 0, "the queue is empty");
my @r = record_lines(5);
is(join(",", sort map { $_->{callRecord}{id} } @r), join(",", sort @main::R), "each record once");
ok(!(grep { @{ $_->{callRecord}{sessions} } != 70 } @r), "each whole");
GraphNotify::sim_faults();



=== TEST 4: signing in with a certificate (PS256 client assertion)
--- http_config eval
GraphNotify::graph_config(certificate => "")
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $main::R[2], sessions => 1);
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => $main::R[2]))
--- error_code: 202
--- post_check
is(scalar(record_lines(1)), 1, "written");
is(status()->{graph}{token}{failures}, 0, "the simulator accepted the assertion");



=== TEST 5: signing in with a certificate, RS256 with x5t
--- http_config eval
GraphNotify::graph_config(certificate => " alg=RS256")
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $main::R[3], sessions => 1);
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => $main::R[3]))
--- error_code: 202
--- post_check
is(scalar(record_lines(1)), 1, "written");
is(status()->{graph}{token}{failures}, 0, "accepted");



=== TEST 6: the index of written versions survives a restart of the helper
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $main::R[4], sessions => 1);
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => $main::R[4], change => "updated"))
--- error_code: 202
--- post_check
is(scalar(record_lines(1)), 1, "written");
# synced, so that the version is in the index before the kill
status_is(sub { $_[0]{callRecords}{written} }, 1, "counted once synced");
my $old = helper_pid();
kill 'KILL', $old;
ok(wait_helper_pid($old), "a new helper");
is(GraphNotify::http_post("/graph/notify", GraphNotify::basic_body(
    GraphNotify::basic_item(record => $main::R[4], change => "updated")))->{status}, 202, "delivered again");
ok(wait_for(sub { sim_count('record_get', $main::R[4]) >= 2 }), "fetched again");
# asked again a few times (a stale read?), then found written already
status_is(sub { $_[0]{queue}{items} }, 0, "done");
is(status()->{callRecords}{unchanged}, 1, "counted as unchanged");
is(scalar(record_lines(1)), 1, "but the same version is not written twice");
like(read_file(GraphNotify::servroot() . "/graph_notify_temp/callrecords.index"),
     qr/^1 \d+ \Q$main::R[4]\E$/m, "the index on disk");



=== TEST 7: the output cannot be written: Graph is not asked again meanwhile, nothing lost
--- http_config eval
GraphNotify::graph_config(output => "/dev/full")
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $main::R[0], sessions => 1);
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => $main::R[0]))
--- error_code: 202
--- post_check
ok(wait_for(sub { status()->{helper}{outputErrors} >= 3 }), "the write is retried");
is(sim_count('record_get', $main::R[0]), 1, "but the record was fetched once");
is(status()->{queue}{items}, 1, "and the item is kept");
rewrite_conf("graph_notify_output /dev/full;", "graph_notify_output logs/graph_notify.ndjson;");
ok(reload_nginx(), "reloaded with a writable output");
my @r = record_lines(1);
is(scalar @r, 1, "written");
ok(wait_for(sub { status()->{queue}{items} == 0 }), "and gone from the queue");
