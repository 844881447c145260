# Subscriptions for two tenants: a backfill of call records per tenant, and
# a "missed" lifecycle event acted on for either; a client state read from
# a file by graph_notify_subscription.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

master_on();
workers(1);
no_shuffle();
GraphNotify::start_sim();

our $T1 = '11111111-2222-3333-4444-555555555555';
our $T2 = '22222222-3333-4444-5555-666666666666';

sub sub_config {
    my ($tenants, $extra) = @_;
    return GraphNotify::graph_config(extra =>
        "graph_notify_subscription communications/callRecords "
        . "tenant=$tenants "
        . "url=http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/graph/notify"
        . "$extra;\n"
        . "    graph_notify_backfill longest_call=60s latency=0 outage=3s;\n");
}

# The subscriptions on the status page once $n of them are healthy.
sub healthy {
    my ($n) = @_;
    my $items = wait_for(sub {
        my $st = eval { status() } or return undef;
        my @i = grep { $_->{verdict} eq 'healthy' }
                @{ $st->{subscriptions}{items} };
        return @i == $n ? \@i : undef;
    });
    return $items ? @$items : ();
}

run_tests();

__DATA__

=== TEST 1: two tenants: a backfill each at the first start, and one on "missed" for either
--- http_config eval
main::sub_config("$main::T1,$main::T2", '')
--- init
GraphNotify::sim_reset();
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @s = main::healthy(2);
is(scalar @s, 2, "one subscription per tenant, both healthy");
is(join(",", sort map { $_->{tenant} } @s), "$main::T1,$main::T2", "one for each tenant");
ok(wait_for(sub { status()->{subscriptions}{backfill}{runs} >= 2 }),
   "no state yet: the call records of each tenant looked for");
for my $s (reverse @s) {
    my $runs = status()->{subscriptions}{backfill}{runs};
    my $r = sim_post("/_sim/subscriptions/$s->{id}/lifecycle", { event => 'missed' });
    is($r->{status}, 202, "missed, for tenant $s->{tenant}: answered 202");
    ok(wait_for(sub { status()->{subscriptions}{backfill}{runs} > $runs }),
       "its tenant's call records looked for again");
}
ok(wait_for(sub { log_count(qr/call records of tenant $main::T2: \d+ listed/) >= 2 }),
   "the second tenant's backfill ran to its end");
--- no_error_log
[alert]
[crit]



=== TEST 2: client_state=file:PATH: the file's line, without its newline, is sent and never logged
--- http_config eval
main::sub_config($main::T1, " client_state=file:$ENV{TEST_NGINX_HTML_DIR}/client-state.txt")
--- user_files
>>> client-state.txt
secret-1
--- init
GraphNotify::sim_reset();
--- request
GET /graph/status
--- error_code: 200
--- post_check
my ($s) = main::healthy(1);
ok($s, "healthy");
my @subs = grep { $_->{notificationUrl} =~ m{/graph/notify$} } @{ sim_get('/_sim/subscriptions') };
is(scalar @subs, 1, "one subscription at Graph");
is($subs[0]{clientState}, 'secret-1', "with the file's client state, no newline");
is(log_count(qr/secret-1/), 0, "the client state is not logged");
unlike(status_text(), qr/secret-1/, "nor on the status page");
--- no_error_log
[alert]
[crit]
