# The fair share of the zone: a tenant that holds its share while others
# wait gets 503 with Retry-After; the others keep getting 202.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

master_on();
workers(2);
no_shuffle();

# nothing is written: every accepted item stays in the 1m zone
$GraphNotify::HTTP_CONFIG =~ s{graph_notify_output [^\n]*;}
                              {graph_notify_output /dev/full;};

our $A = "aaaaaaaa-1111-4111-8111-111111111111";
our $B = "bbbbbbbb-2222-4222-8222-222222222222";

# Posts batches of $size items of $tenant until one is refused (or $max
# batches); returns the items accepted and the refusal.
sub flood {
    my ($tenant, $size, $max, $tag) = @_;
    my ($accepted, $refused) = (0, undef);
    for my $b (1 .. $max) {
        my $res = GraphNotify::http_post("/graph/notify", GraphNotify::basic_body(
            map { GraphNotify::basic_item(tenant => $tenant, record => "$tag-$b-$_") } 1 .. $size));
        if ($res->{status} != 202) { $refused = $res; last }
        $accepted += $size;
    }
    return ($accepted, $refused);
}

sub post_one {
    my ($tenant, $n, $tag) = @_;
    return GraphNotify::http_post("/graph/notify", GraphNotify::basic_body(
        map { GraphNotify::basic_item(tenant => $tenant, record => "$tag-$_") } 1 .. $n))->{status};
}

run_tests();

__DATA__

=== TEST 1: tenant A floods while B waits: A is held to half the zone, B keeps getting 202
--- request
GET /graph/status
--- error_code: 200
--- post_check
is(main::post_one($main::B, 10, "b0"), 202, "B queues a few");
my $t0 = time;
my ($n, $res) = main::flood($main::A, 50, 40, "a");
ok($res, "A refused after $n items");
is($res && $res->{status}, 503, "with 503");
ok($res && $res->{headers}{'retry-after'}, "and Retry-After");
my $st = status();
cmp_ok($st->{queue}{bytes}, '<', 0.8 * $st->{queue}{zoneSize}, "the zone is not full");
is($st->{queueFull}, 0, "no queue-full refusal");
cmp_ok($st->{queue}{shareRefused}, '>=', 1, "a share refusal counted");
is($st->{queue}{tenants}, 2, "two tenants hold items");
is(join(",", map { main::post_one($main::B, 10, "b$_") } 1 .. 5), "202,202,202,202,202",
   "B keeps getting 202");
is(join(",", map { main::post_one($main::A, 50, "a-more$_") } 1 .. 10), join(",", (503) x 10),
   "A still refused");
my $lines = log_count(qr/graph_notify: a tenant holds its share of the queue \(50%\)/);
# each worker writes a line at most once a second (1000 ms of its clock)
my $most = 2 * (1 + int((time - $t0) / 0.999));
ok($lines >= 1 && $lines <= $most,
   "logged, rate-limited: $lines line(s) for 11 refusals, at most $most");



=== TEST 2: a tenant alone may fill the zone; once another is refused, it is held to its share
--- request
GET /graph/status
--- error_code: 200
--- post_check
my ($n, $res) = main::flood($main::A, 50, 60, "alone");
ok($res, "A refused after $n items");
cmp_ok(status()->{queueFull}, '>=', 1, "because the zone is full");
is(status()->{queue}{shareRefused}, 0, "not for its share");
is(main::post_one($main::B, 50, "b"), 503, "B refused too (as many items as A's last batch): no room");
cmp_ok(status()->{queue}{shareRefused}, '==', 0, "for lack of room");
is(main::post_one($main::A, 1, "alone-more"), 503, "A refused while B waits");
cmp_ok(status()->{queue}{shareRefused}, '>=', 1, "now for its share");



=== TEST 3: the share is a parameter of graph_notify_zone
--- http_config
    graph_notify_zone graph_notify:1m share=101%;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
--- must_die
--- error_log
invalid share "share=101%", expected a percentage from 1% to 100%
