# Call records: fetched whole from the (simulated) Graph, once per version.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

no_shuffle();
GraphNotify::start_sim();

$GraphNotify::HTTP_CONFIG = $GraphNotify::GRAPH_HTTP_CONFIG;

our $R1 = "a1000000-0000-4000-8000-000000000001";
our $R2 = "a1000000-0000-4000-8000-000000000002";

sub notify {
    my ($id, $change) = @_;
    return GraphNotify::http_post("/graph/notify", GraphNotify::basic_body(
        GraphNotify::basic_item(record => $id, change => $change || 'created')))->{status};
}

run_tests();

__DATA__

=== TEST 1: a record with 1 session and one with 250 sessions: every page merged
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $main::R1, sessions => 1);
GraphNotify::sim_record(id => $main::R2, sessions => 250);
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(
    GraphNotify::basic_item(record => $main::R1),
    GraphNotify::basic_item(record => $main::R2))
--- error_code: 202
--- timeout: 10
--- post_check
my %r = map { $_->{callRecord}{id} => $_ } record_lines(2);
is(scalar keys %r, 2, "two call records written");
my $big = $r{$main::R2}{callRecord};
is(scalar @{ $big->{sessions} }, 250, "250 sessions in one record");
my %ids = map { $_->{id} => 1 } @{ $big->{sessions} };
is(scalar keys %ids, 250, "each session once");
ok(!(grep { !@{ $_->{segments} || [] } } @{ $big->{sessions} }), "every session has its segments");
ok(!exists $big->{'sessions@odata.nextLink'}, "no paging link left");
is(sim_count('sessions_page', $main::R2), 4, "four more pages fetched (60 a page)");
is(scalar @{ $r{$main::R1}{callRecord}{sessions} }, 1, "the small one: 1 session");
is($r{$main::R1}{kind}, "callRecord", "kind");
is($r{$main::R1}{subscriptionId}, "sub-basic-1", "the notification's fields kept");
like($r{$main::R1}{fetchedAt}, qr/^\d{4}-\d\d-\d\dT[\d:.]+Z$/, "fetchedAt");
is($r{$main::R1}{callRecord}{version}, 1, "version");
ok(!exists $r{$main::R1}{clientState}, "no clientState");
is(scalar(output_lines()), 2, "nothing else written");
status_is(sub { $_[0]{callRecords}{written} }, 2, "counted");
status_is(sub { $_[0]{queue}{items} }, 0, "the queue is empty: items left only once written");
my $st = status();
is($st->{token}{requests} // $st->{graph}{token}{requests}, 1, "one token for both");



=== TEST 2: created, then three updates: each version written once, in order
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $main::R1, sessions => 2);
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => $main::R1))
--- error_code: 202
--- post_check
record_lines(1);
for my $v (2 .. 4) {
    sim_post("/_sim/records/$main::R1/update");
    is(main::notify($main::R1, 'updated'), 202, "updated v$v accepted");
    record_lines($v);
}
my @v = map { $_->{callRecord}{version} } record_lines(4);
is("@v", "1 2 3 4", "versions 1 to 4, each once, in order");
is(main::notify($main::R1, 'updated'), 202, "the last update delivered again");
ok(wait_for(sub { status()->{callRecords}{unchanged} == 1 }), "counted as unchanged");
is(status()->{callRecords}{staleReads}, 2, "after asking twice more, as it may be a stale read");
@v = map { $_->{callRecord}{version} } record_lines(5, 1);
is("@v", "1 2 3 4", "not written again");



=== TEST 3: the same notification delivered 5 times: one fetch, one line
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $main::R1, sessions => 3);
GraphNotify::sim_faults(latency_ms => 300);
--- request eval
[ map { "POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => $main::R1)) } 1 .. 5 ]
--- error_code eval
[202, 202, 202, 202, 202]
--- post_check
record_lines(1);
# items leave the queue once their line is synced: none can come later
status_is(sub { $_[0]{queue}{items} }, 0, "all five answered");
is(scalar(record_lines(1)), 1, "one line");
is(sim_count('record_get', $main::R1), 1, "one fetch");
sim_faults();



=== TEST 4: 404 for the first tries, then ready
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $main::R1, sessions => 1, not_found_times => 2);
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => $main::R1))
--- error_code: 202
--- post_check
my @r = record_lines(1, 30);
is(scalar @r, 1, "written once ready");
is(sim_count('record_get', $main::R1), 3, "two 404s, then 200");
my $st = status();
is($st->{graph}{answers}{not_found}, 2, "404s counted");
is($st->{callRecords}{dropped}{not_found}, 0, "nothing dropped");



=== TEST 5: 429 with Retry-After 2: no request to Graph before it ends
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $main::R1, sessions => 1);
GraphNotify::sim_record(id => $main::R2, sessions => 1);
GraphNotify::sim_faults(status_queue => [{ status => 429, retry_after => 2, count => 1,
                              path_prefix => "/v1.0/communications" }]);
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(
    GraphNotify::basic_item(record => $main::R1),
    GraphNotify::basic_item(record => $main::R2))
--- error_code: 202
--- post_check
my @r = record_lines(2, 30);
is(scalar @r, 2, "both written");
my @req = grep { $_->{kind} =~ /^(record_get|sessions_page)$/ } @{ sim_stats()->{requests} };
my ($throttled) = grep { $_->{status} == 429 } @req;
ok($throttled, "Graph throttled once");
# a request already on its way when the 429 came is not a retry
my @during = grep { $_->{t} > $throttled->{end} + 0.05 && $_->{t} < $throttled->{end} + 1.95 } @req;
is(scalar @during, 0, "no request during the pause, for either record");
my $st = status();
is($st->{graph}{answers}{throttled}, 1, "counted");
is($st->{graph}{tenantPauses}, 1, "the tenant was paused");
is(log_count(qr/graph_notify: Graph answered 429 for tenant \S+, pausing it for 2000 ms/), 1, "logged");



=== TEST 6: a storm of 503s, then recovery
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $main::R1, sessions => 1);
GraphNotify::sim_faults(status_queue => [{ status => 503, count => 3, path_prefix => "/v1.0/communications" }]);
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => $main::R1))
--- error_code: 202
--- timeout: 5
--- post_check
my @r = record_lines(1, 30);
is(scalar @r, 1, "written after the storm");
is(sim_count('record_get', $main::R1), 4, "three 503s, then 200");
is(status()->{graph}{answers}{server_error}, 3, "counted");
my @t = map { $_->{t} } grep { $_->{kind} eq 'record_get' } @{ sim_stats()->{requests} };
cmp_ok($t[3] - $t[0], '>', 3, "with growing delays between tries");



=== TEST 7: the token expires mid-run (revoked): one new token, nothing lost
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $main::R1, sessions => 1);
GraphNotify::sim_record(id => $main::R2, sessions => 1);
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => $main::R1))
--- error_code: 202
--- post_check
record_lines(1);
sim_post("/_sim/tokens/revoke");
is(main::notify($main::R2), 202, "accepted");
my @r = record_lines(2);
is(scalar @r, 2, "both written");
is(sim_count('token'), 2, "a second token, once");
is(status()->{graph}{answers}{unauthorized}, 1, "the 401 counted");



=== TEST 8: a record Graph never has: dropped after the horizon, logged and counted
--- http_config eval
GraphNotify::graph_config(extra => "graph_notify_record_horizon 3s;")
--- init
GraphNotify::sim_reset();
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => $main::R1))
--- error_code: 202
--- post_check
ok(wait_for(sub { status()->{callRecords}{dropped}{not_found} == 1 }, 15), "dropped as not found");
is(status()->{queue}{items}, 0, "the item left the queue");
is(log_count(qr/graph_notify: dropped call record \Q$main::R1\E \(1 notification\(s\)\): not found, last HTTP status 404, after \d+ s/), 1, "one log line with the reason");
is(scalar(record_lines(1, 0.5)), 0, "nothing written");



=== TEST 9: other resources and rich items are written as they come
--- init
GraphNotify::sim_reset();
--- request eval
"POST /graph/notify\n" . GraphNotify::json_encode({ value => [
    { %{ GraphNotify::basic_item() }, resource => "users/x/events/y" } ] })
--- error_code: 202
--- post_check
my @l = wait_lines(1);
is($l[0]{kind}, "basic", "written as a notification");
is(sim_stats()->{total}, 0, "Graph not asked");
