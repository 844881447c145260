# Basic notifications: accepted, queued, written by the helper.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a call-record notification is answered 202 and written whole
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body()
--- more_headers
Content-Type: application/json
--- error_code: 202
--- response_body
--- response_headers
Content-Length: 0
--- no_error_log
[warn]
[error]
--- post_check
my @l = wait_lines(1);
is(scalar @l, 1, "one line");
my $item = GraphNotify::basic_item();
delete $item->{clientState};
my $line = $l[0];
like(delete $line->{receivedAt}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
     "receivedAt is ISO-8601 UTC with milliseconds");
is(delete $line->{kind}, "basic", "kind");
is_deeply($line, $item, "every notification field but clientState");
unlike(read_file(output_file()), qr/secret-1/, "no clientState in the output");
is(status()->{items}{accepted}, 1, "accepted counted");
status_is(sub { $_[0]{items}{written} }, 1, "written counted");
status_is(sub { $_[0]{queue}{items} }, 0, "queue empty again");



=== TEST 2: a wrong or missing clientState drops the item, the batch gets 202
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(
    GraphNotify::basic_item(record => "r1"),
    GraphNotify::basic_item(record => "r2", client_state => "not-the-secret-42"),
    GraphNotify::basic_item(record => "r3", client_state => undef),
    GraphNotify::basic_item(record => "r4"))
--- error_code: 202
--- grep_error_log eval: qr/graph_notify: dropped .*/
--- grep_error_log_out eval
qr/^graph_notify: dropped 2 of 4 item\(s\) \(client_state=2\); first: item 1, subscription sub-basic-1: clientState missing or wrong, client: /
--- post_check
my @l = wait_lines(2);
is(join(",", map { $_->{resourceData}{id} } @l), "r1,r4", "only the good items");
my $st = status();
is($st->{items}{dropped}{client_state}, 2, "drops counted by reason");
is($st->{items}{received}, 4, "received counted");
is(log_count(qr/graph_notify: .*(not-the-secret|secret-1)/), 0, "no clientState in our log lines");



=== TEST 3: two client states at once, for rotation
--- http_config
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state old-secret;
    graph_notify_client_state file:$TEST_NGINX_TOP/t/data/client-state.txt;
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(
    GraphNotify::basic_item(record => "r1", client_state => "old-secret"),
    GraphNotify::basic_item(record => "r2", client_state => "new secret from a file"),
    GraphNotify::basic_item(record => "r3", client_state => "new secret from a fil"),
    GraphNotify::basic_item(record => "r4", client_state => "old-secret "))
--- error_code: 202
--- post_check
my @l = wait_lines(2);
is(join(",", map { $_->{resourceData}{id} } @l), "r1,r2", "both secrets, exact match only");



=== TEST 4: no client state configured: items are accepted as they come
--- http_config
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(
    GraphNotify::basic_item(record => "r1", client_state => undef))
--- error_code: 202
--- post_check
my @l = wait_lines(1);
is($l[0]{resourceData}{id}, "r1", "written");



=== TEST 5: tenants: items of other tenants are dropped (ids compared without case)
--- http_config
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state secret-1;
    graph_notify_tenant 11111111-2222-3333-4444-555555555555 AAAAAAAA-2222-3333-4444-555555555555;
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(
    GraphNotify::basic_item(record => "r1"),
    GraphNotify::basic_item(record => "r2", tenant => "aaaaaaaa-2222-3333-4444-555555555555"),
    GraphNotify::basic_item(record => "r3", tenant => "99999999-2222-3333-4444-555555555555"))
--- error_code: 202
--- error_log
dropped 1 of 3 item(s) (tenant=1); first: item 2, subscription sub-basic-1: tenant not allowed
--- post_check
my @l = wait_lines(2);
is(join(",", map { $_->{resourceData}{id} } @l), "r1,r2", "allowed tenants only");
is(status()->{items}{dropped}{tenant}, 1, "counted");



=== TEST 6: a lifecycle notification is written with its event
--- request eval
"POST /graph/notify\n" . GraphNotify::json_encode({ value => [{
    subscriptionId => "sub-1",
    subscriptionExpirationDateTime => "2026-11-26T10:00:00Z",
    tenantId => "11111111-2222-3333-4444-555555555555",
    clientState => "secret-1",
    lifecycleEvent => "reauthorizationRequired" }] })
--- error_code: 202
--- post_check
my @l = wait_lines(1);
is($l[0]{kind}, "lifecycle", "kind");
is($l[0]{lifecycleEvent}, "reauthorizationRequired", "event kept");



=== TEST 7: 10 000 items in one POST are all written, in order
--- http_config
    graph_notify_zone graph_notify:32m;
    graph_notify_max_batch 10000;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state secret-1;
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(
    map { GraphNotify::basic_item(record => "rec-$_") } 1 .. 10000)
--- error_code: 202
--- timeout: 30
--- post_check
my @l = wait_lines(10000, 30);
is(scalar @l, 10000, "10 000 lines");
is(join(",", map { $_->{resourceData}{id} } @l),
   join(",", map { "rec-$_" } 1 .. 10000), "in order, each once");
status_is(sub { $_[0]{items}{written} }, 10000, "counted");



=== TEST 8: a body over client_max_body_size gets 413 and nothing is queued
--- config
    location = /graph/notify { client_max_body_size 2k; graph_notify; }
    location = /graph/status { graph_notify_status; }
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(
    map { GraphNotify::basic_item(record => "rec-$_") } 1 .. 20)
--- error_code: 413
--- error_log
client intended to send too large body
--- post_check
is(status()->{items}{accepted}, 0, "nothing accepted");
is(scalar(() = wait_lines(1, 0.5)), 0, "nothing written");



=== TEST 9: a body that NGINX buffers to a temporary file works the same
--- config
    client_body_buffer_size 1k;
    location = /graph/notify { graph_notify; }
    location = /graph/status { graph_notify_status; }
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(
    map { GraphNotify::basic_item(record => "rec-$_") } 1 .. 50)
--- error_code: 202
--- error_log
a client request body is buffered to a temporary file
--- post_check
my @l = wait_lines(50);
is(scalar @l, 50, "all 50 written");
is($l[49]{resourceData}{id}, "rec-50", "the last one whole");



=== TEST 10: an empty batch is answered 202 and writes nothing
--- request
POST /graph/notify
{"value":[]}
--- error_code: 202
--- post_check
my @l = wait_lines(1, 0.5);
is(scalar @l, 0, "nothing written");



=== TEST 11: the status page in Prometheus text format
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(
    GraphNotify::basic_item(record => "r1"),
    GraphNotify::basic_item(record => "r2", client_state => "x"))
--- error_code: 202
--- post_check
wait_lines(1);
my $t = status_text("?format=prometheus");
like($t, qr/^# TYPE graph_notify_requests_total counter$/m, "typed");
like($t, qr/^graph_notify_items_accepted_total 1$/m, "accepted");
like($t, qr/^graph_notify_items_dropped_total\{reason="client_state"\} 1$/m, "dropped by reason");
like($t, qr/^graph_notify_queue_items\{state="pending"\} 0$/m, "queue gauge");
like($t, qr/^graph_notify_helper_heartbeat_seconds [1-9]\d+$/m, "heartbeat");
unlike($t, qr/secret/, "no secrets");
is(GraphNotify::http_get("/graph/status?format=xml")->{status}, 400, "unknown format");
