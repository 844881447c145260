# Subscriptions declared in nginx.conf, kept alive by the helper (with a
# master process): created with Graph's handshake, adopted, renewed,
# recreated, lifecycle events, call records of gaps.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

master_on();
workers(2);
no_shuffle();
GraphNotify::start_sim('--subscription-page-size', 2);

our $T = '11111111-2222-3333-4444-555555555555';
our $URL = "http://127.0.0.1:" . Test::Nginx::Socket::server_port() . "/graph/notify";

sub sub_config {
    my ($extra) = @_;
    return GraphNotify::graph_config(extra =>
        "graph_notify_subscription communications/callRecords tenant=$T "
        . "url=http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/graph/notify;\n"
        . "    graph_notify_backfill longest_call=60s latency=0 outage=3s;\n"
        . ($extra || ''));
}

# The first subscription on the status page once its verdict is $v.
sub wait_verdict {
    my ($v, $timeout, $i) = @_;
    return wait_for(sub {
        my $st = eval { status() } or return undef;
        my $s = $st->{subscriptions}{items}[$i || 0];
        return $s && $s->{verdict} eq $v ? $s : undef;
    }, $timeout);
}

sub graph_subs {
    return [ grep { $_->{notificationUrl} =~ m{/graph/notify$} }
             @{ sim_get('/_sim/subscriptions') } ];
}

sub restart {
    my ($between) = @_;
    Test::Nginx::Socket::stop_nginx('restart');
    $between->() if $between;
    Test::Nginx::Socket::start_nginx('restart',
                                     $Test::Nginx::Socket::UseValgrind);
}

run_tests();

__DATA__

=== TEST 1: created at start, with Graph's handshake against this server
--- http_config eval
main::sub_config()
--- init
GraphNotify::sim_reset();
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $s = main::wait_verdict('healthy');
ok($s, "healthy");
my $subs = main::graph_subs();
is(scalar @$subs, 1, "one subscription at Graph");
is($subs->[0]{id}, $s->{id}, "the one on the status page");
is($subs->[0]{clientState}, 'secret-1', "with the location's client state");
is($subs->[0]{notificationUrl}, $main::URL, "to this server");
is($subs->[0]{lifecycleNotificationUrl}, $main::URL, "lifecycle events too");
is($subs->[0]{changeType}, 'created,updated', "created and updated");
cmp_ok(status()->{handshakes}, '>=', 2, "both handshakes answered");
cmp_ok($s->{expiresIn}, '>', 4000 * 60, "for the longest Graph allows");
is($s->{lastRenewal}{result}, 'ok', "result ok");
is(log_count(qr/secret-1/), 0, "the client state is not logged");
unlike(status_text(), qr/secret-1/, "nor on the status page");
like(status_text("?format=prometheus"),
     qr/graph_notify_subscription_up\{resource="communications\/callRecords",tenant="$main::T",id="$s->{id}"\} 1/,
     "a Prometheus gauge");
main::restart();
my $t = main::wait_verdict('healthy');
is($t->{id}, $s->{id}, "found again after a restart");
is($t->{lastRenewal}{result}, 'ok', "its last renewal kept in the state file");
is($t->{lastRenewal}{status}, 201, "with Graph's status");
$main::ID = $s->{id};



=== TEST 2: a new server (no state) adopts it; restarts find it; a corrupt state file changes nothing
--- http_config eval
main::sub_config()
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $s = main::wait_verdict('healthy');
is($s->{id}, $main::ID, "adopted, not created again");
is(scalar @{ main::graph_subs() }, 1, "still one at Graph");
ok(wait_for(sub { log_count(qr/subscription $main::ID .* adopted/) }), "logged");
main::restart();
$s = main::wait_verdict('healthy');
is($s->{id}, $main::ID, "found after a restart");
ok(wait_for(sub { log_count(qr/subscription $main::ID .* found/) }), "from the state file");
main::restart(sub {
    open my $fh, '>', "$ENV{TEST_NGINX_SERVER_ROOT}/graph_notify_temp/subscriptions.state" or die;
    print $fh "{\"heartbeat\": garbage";
    close $fh;
});
$s = main::wait_verdict('healthy');
is($s->{id}, $main::ID, "reconciled from Graph after a corrupt state file");
ok(log_count(qr/state file .* is not valid/), "the corrupt file is reported");
is(scalar @{ main::graph_subs() }, 1, "no duplicate");
is(sim_count('subscription_create'), 1, "created once in all");



=== TEST 3: a 409 on create adopts the existing subscription
--- http_config eval
main::sub_config()
--- init
GraphNotify::sim_faults(hide_subscriptions => 1);
--- request
GET /graph/status
--- error_code: 200
--- post_check
ok(wait_for(sub { log_count(qr/subscription $main::ID .* exists already: adopted/) }), "409 adopts");
my $s = main::wait_verdict('healthy');
is($s->{id}, $main::ID, "the same subscription");
is(scalar @{ main::graph_subs() }, 1, "no duplicate");
cmp_ok(sim_stats()->{by_kind_status}{'subscription_create 409'}, '>=', 1, "Graph answered 409");
GraphNotify::sim_faults();



=== TEST 4: down for "two hours": the gap's call records are fetched, none written twice
--- http_config eval
main::sub_config()
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $s = main::wait_verdict('healthy');
my @r = map { sprintf "c4000000-0000-4000-8000-%012d", $_ } 0 .. 3;
my $now = time;
sim_record(id => $r[0], startDateTime => GraphNotify::iso_time($now - 1800), duration_seconds => 600);
my $n = sim_post("/_sim/subscriptions/$s->{id}/notify", { record => $r[0] });
is($n->{status}, 202, "a notification through the subscription");
is(scalar(record_lines(1)), 1, "written");
ok(wait_for(sub { (status()->{subscriptions}{items}[0]{lastNotificationAge} // -1) >= 0 }), "the notification is seen");
main::restart(sub {
    my $f = "$ENV{TEST_NGINX_SERVER_ROOT}/graph_notify_temp/subscriptions.state";
    my $st = json_decode(read_file($f));
    $st->{heartbeat} = time - 7200;
    open my $fh, '>', $f or die;
    print $fh json_encode($st);
    close $fh;
    sim_record(id => $r[$_], startDateTime => GraphNotify::iso_time($now - 3600 * $_ / 2), duration_seconds => 300) for 1 .. 3;
});
my @lines = record_lines(4, 30);
is(scalar @lines, 4, "four call records in all");
is(join(",", sort map { $_->{callRecord}{id} } @lines), join(",", @r), "each once");
is(scalar(grep { $_->{backfill} } @lines), 3, "three found by the backfill");
my $st = status();
cmp_ok($st->{subscriptions}{backfill}{runs}, '>=', 1, "a backfill ran");
is($st->{subscriptions}{backfill}{found}, 3, "and found three");
ok(log_count(qr/last heartbeat is \d+ s old/), "the outage is logged");
like(status_text("?format=prometheus"), qr/graph_notify_backfill_records_total 3/, "a metric");



=== TEST 5: 403 (quota) on create: the status page and one log line say so
--- http_config eval
main::sub_config() =~ s{graph/notify;}{graph/notify?quota=1;}r
--- init
GraphNotify::sim_faults(status_queue => [{ status => 403, kind => 'subscription_create', count => -1,
    code => 'ExtensionError', message => 'Operation on target Subscription failed: the maximum of 100 subscriptions per tenant is reached' }]);
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $s = main::wait_verdict('failing');
ok($s, "failing");
is($s->{lastRenewal}{status}, 403, "Graph's status");
is($s->{lastRenewal}{code}, 'ExtensionError', "Graph's code");
like($s->{lastRenewal}{message}, qr/maximum of 100 subscriptions/, "Graph's message");
# every read during the retries shows the status with its code and message
my ($reads, $torn) = (0, 0);
ok(wait_for(sub {
    my $x = eval { status()->{subscriptions}{items}[0] };
    if ($x && $x->{lastRenewal}{status} == 403) {
        $reads++;
        $torn++ unless $x->{lastRenewal}{code} eq 'ExtensionError'
                       && length $x->{lastRenewal}{message};
    }
    (sim_stats()->{by_kind_status}{'subscription_create 403'} // 0) >= 3;
}), "retried");
is($torn, 0, "none of $reads reads of the status page during the retries is torn");
is(log_count(qr/creating subscription .* failed: 403 ExtensionError .*quota/), 1, "one log line, with what to do");
like(status_text("?format=prometheus"), qr/graph_notify_subscription_up\{[^}]*\} 0/, "up 0");
like(status_text("?format=prometheus"), qr/graph_notify_subscription_verdict\{[^}]*verdict="failing"\} 1/, "verdict failing");
GraphNotify::sim_faults();
GraphNotify::sim_reset();



=== TEST 6: 400 when Graph's handshake fails: the log names the URL
--- http_config eval
main::sub_config() =~ s{graph/notify;}{nowhere;}r
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $s = main::wait_verdict('failing');
ok($s, "failing");
is($s->{lastRenewal}{status}, 400, "Graph's status");
like($s->{lastRenewal}{message}, qr/validation request failed/, "Graph's message");
ok(wait_for(sub { (sim_stats()->{by_kind_status}{'subscription_create 400'} // 0) >= 2 }), "retried");
is(log_count(qr{creating subscription .* at "http://127.0.0.1:\d+/nowhere" failed: 400 ValidationError}), 1, "one log line naming the URL");



=== TEST 7: lifecycle events: reauthorizationRequired renews, subscriptionRemoved recreates, missed backfills
--- http_config eval
main::sub_config()
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $s = main::wait_verdict('healthy');
my $patches = sim_count('subscription_update');
my $r = sim_post("/_sim/subscriptions/$s->{id}/lifecycle", { event => 'reauthorizationRequired' });
is($r->{status}, 202, "answered 202");
ok(wait_for(sub { sim_count('subscription_update') > $patches }), "renewed (PATCH)");
ok(wait_for(sub { status()->{subscriptions}{items}[0]{renewals} >= 1 }), "counted");
my $runs = status()->{subscriptions}{backfill}{runs};
$r = sim_post("/_sim/subscriptions/$s->{id}/lifecycle", { event => 'missed' });
ok(wait_for(sub { status()->{subscriptions}{backfill}{runs} > $runs }), "missed: backfill");
$runs = status()->{subscriptions}{backfill}{runs};
$r = sim_post("/_sim/subscriptions/$s->{id}/lifecycle", { event => 'subscriptionRemoved' });
my $n = wait_for(sub { my $x = main::wait_verdict('healthy', 1); $x && $x->{id} ne $s->{id} ? $x : undef });
ok($n, "recreated with a new id");
is(scalar @{ main::graph_subs() }, 1, "one at Graph");
ok(wait_for(sub { status()->{subscriptions}{backfill}{runs} > $runs }), "then a backfill");
my @l = grep { $_->{kind} eq 'lifecycle' } wait_lines(3);
is(join(",", map { $_->{lifecycleEvent} } @l), "reauthorizationRequired,missed,subscriptionRemoved", "each written to the output");
ok(!(grep { exists $_->{clientState} } @l), "without the client state");
$main::ID = $n->{id};



=== TEST 8: two helpers at once (binary upgrade): one acts on subscriptions
--- http_config eval
main::sub_config()
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $s = main::wait_verdict('healthy');
# under valgrind NGINX runs in the foreground: a binary upgrade would leave
# the new master behind
UPGRADE: {
if ($ENV{TEST_NGINX_USE_VALGRIND}) { pass("binary upgrade skipped under valgrind"); last UPGRADE }
my $lock = "$ENV{TEST_NGINX_SERVER_ROOT}/graph_notify_temp/subscriptions.lock";
ok(system("flock", "-n", $lock, "true") != 0, "the renewer holds the lock");
my $old = nginx_pid();
kill 'USR2', $old;
ok(wait_for(sub { log_count(qr/another helper acts on subscriptions, waiting/) }), "the second helper waits");
my $creates = sim_count('subscription_create');
# lifecycle events reach the workers of either server: each is acted on once
my $acted = 1;
for my $i (1 .. 6) {
    my $n = sim_count('subscription_update');
    sim_post("/_sim/subscriptions/$s->{id}/lifecycle", { event => 'reauthorizationRequired' });
    $acted = 0 unless wait_for(sub { sim_count('subscription_update') > $n }, 10);
}
ok($acted, "six lifecycle events during the overlap, six renewals");
diag(log_count(qr/handed to the helper that acts on subscriptions/) . " event(s) handed over");
kill 'QUIT', $old;
ok(wait_for(sub { log_count(qr/this helper now acts on subscriptions/) }), "and takes over when the first is gone");
ok(wait_for(sub { log_count(qr/subscription $s->{id} .* found/) >= 1 }), "finding the subscription");
is(sim_count('subscription_create'), $creates, "no subscription created");
is(scalar @{ main::graph_subs() }, 1, "one at Graph");
# an event handed over by a helper that waited for the lock
my $n = sim_count('subscription_update');
my $events = "$ENV{TEST_NGINX_SERVER_ROOT}/graph_notify_temp/subscriptions.events";
open my $fh, '>>', $events or die;
print $fh "$s->{id} reauthorizationRequired\n";
close $fh;
ok(wait_for(sub { sim_count('subscription_update') > $n }), "a handed-over event is acted on");
ok(!-s $events, "and taken from the file");
}



=== TEST 9: a subscription to our URL that is no longer declared: reported, then deleted with prune on
--- http_config eval
main::sub_config()
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $s = main::wait_verdict('healthy');
my $tok = json_decode(HTTP::Tiny->new->post_form(
    "http://127.0.0.1:$ENV{TEST_NGINX_SIM_PORT}/$main::T/oauth2/v2.0/token",
    { grant_type => 'client_credentials', client_id => $GraphNotify::APP_ID,
      client_secret => $GraphNotify::SECRET, scope => 'https://graph.microsoft.com/.default' })->{content})->{access_token};
my $r = HTTP::Tiny->new->post("http://127.0.0.1:$ENV{TEST_NGINX_SIM_PORT}/v1.0/subscriptions", {
    headers => { Authorization => "Bearer $tok", 'Content-Type' => 'application/json' },
    content => json_encode({ changeType => 'created', resource => 'communications/onlineMeetings',
        notificationUrl => $main::URL, clientState => 'secret-1',
        expirationDateTime => GraphNotify::iso_time(time + 3600) }) });
is($r->{status}, 201, "a subscription made by hand, to our URL");
my $old = json_decode($r->{content})->{id};
ok(reload_nginx(), "reloaded");
ok(wait_for(sub { log_count(qr/subscription $old of tenant .* is not declared; "graph_notify_subscription_prune on" deletes it/) }), "reported");
is(scalar @{ main::graph_subs() }, 2, "and kept");
rewrite_conf("graph_notify_backfill", "graph_notify_subscription_prune on;\n    graph_notify_backfill");
ok(reload_nginx(), "reloaded with prune on");
ok(wait_for(sub { log_count(qr/deleted subscription $old of tenant .*, no longer declared/) }), "deleted");
my $subs = main::graph_subs();
is(join(",", map { $_->{id} } @$subs), $s->{id}, "the declared one stays");
