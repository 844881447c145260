# App-only tokens that expire while the helper runs (4-second tokens).

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

no_shuffle();
GraphNotify::start_sim('--token-lifetime', 4);

$GraphNotify::HTTP_CONFIG = $GraphNotify::GRAPH_HTTP_CONFIG;

our @R = map { sprintf "c3000000-0000-4000-8000-%012d", $_ } 1 .. 3;

run_tests();

__DATA__

=== TEST 1: a token that expired between two records is renewed, nothing lost
--- init
GraphNotify::sim_reset();
GraphNotify::sim_record(id => $_, sessions => 61) for @main::R;
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(GraphNotify::basic_item(record => $main::R[0]))
--- error_code: 202
--- timeout: 5
--- post_check
is(scalar(record_lines(1)), 1, "the first record");
ok(wait_for(sub { status()->{graph}{token}{expiresIn} < 0 }), "the token expired");
for my $r (@main::R[1, 2]) {
    is(GraphNotify::http_post("/graph/notify", GraphNotify::basic_body(
        GraphNotify::basic_item(record => $r)))->{status}, 202, "accepted");
}
my @r = record_lines(3);
is(scalar @r, 3, "all three written");
ok(!(grep { @{ $_->{callRecord}{sessions} } != 61 } @r), "each with both pages");
cmp_ok(sim_count('token'), '>=', 2, "a new token after the old one expired");
is(status()->{callRecords}{dropped}{expired}, 0, "nothing dropped");
status_is(sub { $_[0]{queue}{items} }, 0, "nothing left");
