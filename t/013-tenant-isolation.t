# Tenants of the Graph client: none stalls the others, whatever it waits for.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

master_on();
workers(2);
no_shuffle();
GraphNotify::start_sim();

our $GOOD = "11111111-2222-3333-4444-555555555555";
our $BAD = "bbbbbbbb-2222-3333-4444-555555555555";

# A zone for a few thousand items, and extra directives.
sub config {
    my ($extra) = @_;
    my $c = GraphNotify::graph_config(extra => $extra || '');
    $c =~ s/graph_notify_zone graph_notify:4m;/graph_notify_zone graph_notify:32m;/
        or die "no zone";
    return $c;
}

sub rec_id { sprintf "c%07d-0000-4000-8000-%012d", @_ }

sub tenant_id { sprintf "%08x-0000-4000-8000-%012d", @_ }

# Items that are not call records: written as they come.
sub ordinary {
    my ($n) = @_;
    return map { { %{ GraphNotify::basic_item(record => "o$_") },
                   resource => "users/u$_/events/e$_" } } 1 .. $n;
}

# Posts items in batches of 25; returns the statuses.
sub post_all {
    my @items = @_;
    my @st;
    while (my @b = splice @items, 0, 25) {
        push @st, GraphNotify::http_post("/graph/notify",
                                         GraphNotify::basic_body(@b))->{status};
    }
    return @st;
}

# The lines of each kind so far, from the module's "kind" key (the first in
# a line), without decoding them: 1,030 call records are 13 MB of JSON, which
# JSON::PP takes 6 s of CPU to decode, and the polls of TEST 2 missed their
# 10 s for it.
sub kinds {
    my %k;
    /"kind":"(\w+)"/ and $k{$1}++ for GraphNotify::output_lines();
    return \%k;
}

run_tests();

__DATA__

=== TEST 1: 4,100 call-record items of invalid tenant ids; ordinary items keep flowing
--- http_config eval
main::config()
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => main::rec_id(1, 1), sessions => 1);
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @bad = ("bad tenant", "-x", "x" x 256);
my @items = map { basic_item(record => main::rec_id(2, $_), tenant => $bad[$_ % 3]) } 1 .. 4100;
my @st = main::post_all(@items);
ok(!(grep { $_ != 202 && $_ != 400 } @st), "each batch answered 202 (or 400 at intake)");
my $t0 = time;
is(join(",", main::post_all(main::ordinary(200),
    basic_item(record => main::rec_id(1, 1), tenant => $main::GOOD))),
   join(",", (202) x 9), "ordinary items and a good tenant's record accepted");
ok(wait_for(sub { my $k = main::kinds(); ($k->{basic} // 0) >= 200 && $k->{callRecord} }, 10),
   "all written within seconds");
diag(sprintf "written after %.2f s", time - $t0);
my $s = status();
is($s->{callRecords}{dropped}{tenant} + $s->{items}{dropped}{malformed}, 4100,
   "every invalid item dropped and counted");
ok(wait_for(sub { status()->{queue}{items} == 0 }, 10), "the queue is empty");
cmp_ok(log_count(qr/graph_notify: dropped call record .*invalid tenant id/), '<=', 1,
       "one log line for the invalid tenants, not thousands");
is(log_count(qr/x{256}/), 0, "the invalid id is not echoed");



=== TEST 2: 1,030 tenants: each gets a token and its record, no fixed table
--- http_config eval
main::config()
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => main::rec_id(3, $_), sessions => 1) for 1 .. 1030;
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @items = map { basic_item(record => main::rec_id(3, $_), tenant => main::tenant_id($_, $_)) } 1 .. 1030;
is(join(",", main::post_all(@items)), join(",", (202) x 42), "accepted");
is(join(",", main::post_all(main::ordinary(100))), join(",", (202) x 4), "ordinary items accepted");
ok(wait_for(sub { (main::kinds()->{basic} // 0) >= 100 }, 10), "ordinary items written meanwhile");
ok(wait_for(sub { (main::kinds()->{callRecord} // 0) >= 1030 }, 90), "1,030 records written");
is(sim_count('token'), 1030, "one token per tenant");
# the count is published once a second, after the records it counts
status_is(sub { $_[0]{graph}{tenants}{known} }, 1030, "1,030 tenants known");
is(log_count(qr/tokens of more than/), 0, "no table full");



=== TEST 3: a wrong secret in one tenant: the other tenant's records are written, its own wait
--- http_config eval
main::config()
--- init
GraphNotify::sim_reset();
GraphNotify::sim_faults(reject_token_tenants => [$main::BAD]);
GraphNotify::sim_record(id => main::rec_id(4, $_), sessions => 1) for 1 .. 30;
--- request
GET /graph/status
--- error_code: 200
--- post_check
# the refused tenant first, so that its items are at the head of the queue
my @a = map { basic_item(record => main::rec_id(4, $_), tenant => $main::BAD) } 1 .. 10;
is(join(",", main::post_all(@a)), "202", "the refused tenant's items accepted");
ok(wait_for(sub { status()->{graph}{tenants}{noToken} == 1 }), "its sign-in fails");
my @b = map { basic_item(record => main::rec_id(4, $_), tenant => $main::GOOD) } 21 .. 30;
push @a, map { basic_item(record => main::rec_id(4, $_), tenant => $main::BAD) } 11 .. 20;
is(join(",", main::post_all(@a[10 .. 19], @b)), "202", "more of both accepted");
my @r = record_lines(10, 10, 20);
is(scalar @r, 10, "the other tenant's 10 records written");
ok(!(grep { $_->{tenantId} ne $main::GOOD } @r), "only those");
status_is(sub { $_[0]{queue}{items} }, 20, "the refused tenant's 20 items stay queued");
# the tenants' view is published once a second
my $v;
wait_for(sub {
    ($v) = grep { $_->{id} eq $main::BAD } @{ status()->{graph}{tenants}{shown} };
    $v && $v->{backlog} == 10 });
is($v->{state}, "no_token", "the status page shows the tenant without a token");
is($v->{records}, 10, "with the records it works on");
is($v->{backlog}, 10, "and the rest in its backlog");
is(status()->{graph}{tenants}{known}, 2, "two tenants known");
unlike(status_text(), qr/\Q$GraphNotify::SECRET\E/, "no secret on the status page");
my $prom = status_text("?format=prometheus");
like($prom, qr/^graph_notify_tenants\{state="no_token"\} 1$/m, "the Prometheus page: tenants without a token");
like($prom, qr/^graph_notify_graph_client_failing 0$/m, "the Graph client running");
like($prom, qr/\n\z/, "the page whole");
cmp_ok(log_count(qr/token request for tenant "$main::BAD" failed/), '<=', 4,
       "a few log lines for the failing sign-in");



=== TEST 4: the horizon applies while waiting for a token: dropped, counted, logged once
--- http_config eval
main::config("graph_notify_record_horizon 3s;")
--- init
GraphNotify::sim_reset();
GraphNotify::sim_faults(reject_token_tenants => [$main::BAD]);
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @a = map { basic_item(record => main::rec_id(5, $_), tenant => $main::BAD) } 1 .. 10;
is(join(",", main::post_all(@a)), "202", "accepted");
ok(wait_for(sub { status()->{graph}{tenants}{noToken} == 1 }), "no token");
is(join(",", main::post_all(map { basic_item(record => main::rec_id(5, $_), tenant => $main::BAD) } 11 .. 20)),
   "202", "more for its backlog");
ok(wait_for(sub { status()->{callRecords}{dropped}{expired} == 20 }, 15), "all 20 dropped at the horizon");
is(status()->{queue}{items}, 0, "gone from the queue");
my $n = log_count(qr/graph_notify: dropped (call record \S+ \(\d+ notification\(s\)\)|a call-record notification): no token for its tenant/);
is($n, 1, "one line naming the reason");
cmp_ok(log_count(qr/graph_notify: dropped( \d+ more)? call record/), '<=', 2, "not one per record");
is(scalar(record_lines(1, 0.5)), 0, "nothing written");



=== TEST 5: the Graph client cannot start: call records stay queued until it can
--- http_config eval
main::config()
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => main::rec_id(6, 1), sessions => 1);
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $dir = GraphNotify::servroot() . "/graph_notify_temp";
my $old = wait_helper_pid();
ok(wait_for(sub { -e "$dir/callrecords.index" }), "the index exists");
# something in the way of the index: the client cannot start
unlink "$dir/callrecords.index";
mkdir "$dir/callrecords.index" or die $!;
kill 'KILL', $old;
ok(wait_helper_pid($old), "a new helper");
ok(wait_for(sub { status()->{graph}{failing} }), "the status page says the client is not running");
like(status()->{graph}{error}, qr/index/, "and why");
is(http_post("/graph/notify", basic_body(basic_item(record => main::rec_id(6, 1)),
   main::ordinary(1)))->{status}, 202, "accepted");
my @l = wait_lines(1, 5, 1);
is(scalar @l, 1, "the ordinary item is written");
is($l[0]{resource}, "users/u1/events/e1", "and only that one: no call record as a basic line");
status_is(sub { $_[0]{queue}{items} }, 1, "the call record stays queued");
rmdir "$dir/callrecords.index" or die $!;
my @r = record_lines(1, 90);
is(scalar @r, 1, "fetched and written once the client started");
ok(!status()->{graph}{failing}, "no longer failing");
cmp_ok(log_count(qr/the Graph client could not start: the index/), '>=', 1, "logged");



=== TEST 6: a stale read after "updated": asked again, the new version written
--- http_config eval
main::config()
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => main::rec_id(7, 1), sessions => 1);
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => main::rec_id(7, 1)))
--- error_code: 202
--- post_check
is(scalar(record_lines(1)), 1, "version 1 written");
sim_post("/_sim/records/" . main::rec_id(7, 1) . "/update", { stale_reads => 1 });
is(http_post("/graph/notify", basic_body(basic_item(record => main::rec_id(7, 1),
   change => "updated")))->{status}, 202, "updated");
my @v = map { $_->{callRecord}{version} } record_lines(2);
is("@v", "1 2", "version 2 written after the stale read");
my $s = status();
is($s->{callRecords}{staleReads}, 1, "one stale read");
is($s->{callRecords}{unchanged}, 0, "not counted as unchanged");
is(sim_count('record_get', main::rec_id(7, 1)), 3, "three fetches in all");



=== TEST 7: graph_notify_max_tenants: items of a tenant past it dropped with their reason
--- http_config eval
main::config("graph_notify_max_tenants 2;")
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => main::rec_id(8, $_), sessions => 1) for 1 .. 13;
--- request
GET /graph/status
--- error_code: 200
--- post_check
is(join(",", main::post_all(map { basic_item(record => main::rec_id(8, $_), tenant => main::tenant_id($_, $_)) } 1 .. 2)),
   "202", "two tenants");
is(scalar(record_lines(2)), 2, "written");
is(join(",", main::post_all(map { basic_item(record => main::rec_id(8, $_), tenant => main::tenant_id(3, 3)) } 3 .. 13)),
   "202", "a third tenant's items accepted");
ok(wait_for(sub { status()->{callRecords}{dropped}{tenants} == 11 }), "dropped as \"tenants\"");
is(status()->{queue}{items}, 0, "gone from the queue");
is(log_count(qr/graph_notify: dropped call record .*more tenants than graph_notify_max_tenants/), 1,
   "logged once");
is(scalar(record_lines(3, 0.5)), 2, "nothing more written");



=== TEST 8: a slow tenant has at most its share of the requests in flight; another tenant passes it
--- http_config eval
main::config("graph_notify_concurrency 4;")
--- init
GraphNotify::sim_reset();
GraphNotify::sim_faults(tenant_latency_ms => { $main::BAD => 1500 });
GraphNotify::sim_record(id => main::rec_id(9, $_), sessions => 1) for 1 .. 25;
--- request
GET /graph/status
--- error_code: 200
--- post_check
is(join(",", main::post_all(map { basic_item(record => main::rec_id(9, $_), tenant => $main::BAD) } 1 .. 20)),
   "202", "the slow tenant's 20 records");
ok(wait_for(sub { (status()->{graph}{running} // 0) >= 3 }), "its fetches in flight");
is(join(",", main::post_all(map { basic_item(record => main::rec_id(9, $_), tenant => $main::GOOD) } 21 .. 25)),
   "202", "another tenant's 5");
my %by;
ok(wait_for(sub {
    %by = ();
    $by{$_->{tenantId}}++ for grep { $_->{kind} eq 'callRecord' }
                              map { json_decode($_) } output_lines();
    ($by{$main::GOOD} // 0) == 5 }, 20), "the other tenant's records written");
cmp_ok($by{$main::BAD} // 0, '<', 20, "before the slow tenant's");
is(sim_stats()->{max_concurrent_by_tenant}{$main::BAD}, 3, "the slow tenant had 3 of 4 requests in flight, no more");
ok(wait_for(sub { status()->{callRecords}{written} == 25 }, 40), "all written in the end");
