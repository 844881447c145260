# graph_notify_output_sync_interval: the helper begins a sync of the output
# at most once per interval, a delayed sync still comes without more
# traffic, and a stop while one waits loses nothing and writes nothing twice.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;
use Time::HiRes ();

master_on();
workers(1);
no_shuffle();

our $SECOND = $GraphNotify::HTTP_CONFIG
              . "    graph_notify_output_sync_interval 1s;\n";
our $NONE = $GraphNotify::HTTP_CONFIG
            . "    graph_notify_output_sync_interval 0;\n";

# Posts one item whose record id is $id, and waits until its line can be
# read (no trailing margin: the test races the delayed sync).
sub post_one {
    my ($id) = @_;
    my $res = http_post("/graph/notify",
                        basic_body(basic_item(record => $id)));
    return 0 unless $res->{status} == 202;
    return wait_for(sub { written_ids()->{$id} }, 10);
}

# Posts $n items one after the other, each once the last one's line is in
# the output; the seconds from the first post until the queue is empty,
# and the syncs begun meanwhile.
sub post_sequence {
    my ($n, $tag) = @_;
    my $syncs = status()->{helper}{outputSyncs};
    my $t0 = Time::HiRes::time();
    my $ok = 0;
    for my $i (1 .. $n) {
        $ok++ if post_one("$tag-$i");
    }
    Test::More::is($ok, $n, "$tag: every line written");
    Test::More::ok(wait_for(sub { status()->{queue}{items} == 0 }),
                   "$tag: the queue empties without more traffic");
    return (Time::HiRes::time() - $t0,
            status()->{helper}{outputSyncs} - $syncs);
}

# Stops NGINX with $sig while the second of two items waits for its sync,
# and starts it again: each item written once (those of @$written before
# too), nothing left to recover.
sub stop_while_waiting {
    my ($sig, $tag, $written) = @_;
    Test::More::ok(post_one("$tag-1"),
                   "the first line written (its sync begins)");
    Test::More::ok(post_one("$tag-2"), "the second line written");
    my $held = status()->{queue}{items};
    Test::More::ok($held >= 1,
                   "the second item waits for the delayed sync ($held held)");
    Test::More::ok(stop_nginx_now($sig), "stopped with SIG$sig");
    Test::More::ok(start_nginx_again(), "started again");
    push @$written, "$tag-1", "$tag-2";
    check_once($written, "$tag ($held held at the stop)");
    Test::More::is(status()->{journal}{recovered}, 0,
                   "nothing left to recover: the stop synced what waited");
}

run_tests();

__DATA__

=== TEST 1: an interval over a second is refused at nginx -t
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_zone graph_notify:1m;
    graph_notify_output_sync_interval 2s;
--- must_die
--- error_log eval
qr/\[emerg\] .*"graph_notify_output_sync_interval" directive must be at most 1s in .*nginx\.conf:\d+/



=== TEST 2: not a time
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_zone graph_notify:1m;
    graph_notify_output_sync_interval soon;
--- must_die
--- error_log eval
qr/\[emerg\] .*"graph_notify_output_sync_interval" directive invalid value in .*nginx\.conf:\d+/



=== TEST 3: one sync a second at most, the last one without more traffic
--- http_config eval: $::SECOND
--- request
GET /graph/status
--- error_code: 200
--- post_check
my ($secs, $syncs) = main::post_sequence(12, "second");
ok($syncs >= 1, "the output was synced ($syncs syncs in $secs s)");
cmp_ok($syncs, '<=', int($secs) + 2,
       "at most one sync begun a second ($syncs in $secs s)");
my $w = written_ids();
is(scalar(grep { $w->{$_} == 1 } keys %$w), 12, "each item written once");
like(status_text("?format=prometheus"),
     qr/^graph_notify_output_syncs_total \d+$/m, "the syncs in the metrics");



=== TEST 4: 0: items posted one by one get a sync each
--- http_config eval: $::NONE
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $syncs = status()->{helper}{outputSyncs};
my $ok = 0;
for my $i (1 .. 12) {
    # the next item once the last one has left the queue (its sync ended)
    $ok++ if main::post_one("none-$i")
             && wait_for(sub { status()->{queue}{items} == 0 });
}
is($ok, 12, "each item written and synced in turn");
$syncs = status()->{helper}{outputSyncs} - $syncs;
cmp_ok($syncs, '>=', 12, "a sync for each item ($syncs)");



=== TEST 5: a graceful, then a fast stop while a sync waits for its interval
--- http_config eval: $::SECOND
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @written;
main::stop_while_waiting('QUIT', "quit", \@written);
main::stop_while_waiting('TERM', "stop", \@written);
stop_nginx_now('QUIT');
