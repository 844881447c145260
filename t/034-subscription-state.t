# The subscriptions' state file: saved on a thread of the helper, never on
# its event loop; always a whole file; the last state saved at a graceful
# stop; failures logged and retried.
#
# A save is held up with a FIFO in place of the state's temporary file:
# opening it for writing waits until the test opens it for reading, and
# the save then fails (a FIFO cannot be synced) and is tried again.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;
use SubscriptionState;

master_on();
workers(1);
no_shuffle();
GraphNotify::start_sim();

run_tests();

__DATA__

=== TEST 1: a save held up on the disk stops neither the helper's event loop nor its output
--- http_config eval
main::sub_config(1)
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $s = main::healthy();
ok($s, "healthy");
ok(wait_for(sub { my $st = main::state(); $st && $st->{subscriptions}[0]{id} }), "saved");
my $helper = helper_pid();
ok(main::plant_fifo(), "a FIFO in place of the temporary file");
my $tid = main::blocked_task($helper);
ok($tid, "a save waits in open()");
isnt($tid, $helper, "on a thread, not on the helper's event loop");
my $start = time;
my $started = log_count(qr/subscription state save started/);
my @r = map { sprintf "c3400000-0000-4000-8000-%012d", $_ } 1 .. 4;
sim_record(id => $_, startDateTime => GraphNotify::iso_time(time - 600), duration_seconds => 60) for @r;
my $res = http_post(notify_url(), basic_body(map { basic_item(record => $_) } @r));
is($res->{status}, 202, "notifications accepted meanwhile");
my @lines = record_lines(4);
is(join(",", sort map { $_->{callRecord}{id} } @lines), join(",", @r),
   "their call records fetched and written by the helper meanwhile");
ok(wait_for(sub { (status()->{subscriptions}{heartbeatAge} // 9) <= 1
                  && time - $start >= 2.5 }),
   "the helper's heartbeat goes on");
is(main::blocked_task($helper), $tid, "the save still waits");
SKIP: {
    # the debug log says when saves start (NGINX built --with-debug)
    skip "no debug log", 2 unless log_count(qr/\[debug\]/);
    is(log_count(qr/subscription state save started/), $started,
       "no other save started meanwhile");
    cmp_ok(log_count(qr/subscription state save deferred/), '>=', 2,
           "the saves asked for meanwhile wait for it");
}
my $held = eval { json_decode(main::read_fifo()) };
ok($held, "the held-up save wrote a whole state");
is($held->{subscriptions}[0]{id}, $s->{id}, "with the subscription");
ok(wait_for(sub { log_count(qr/saving the subscription state .* failed \(fsync\(\)/) }),
   "the failed save is logged");
ok(wait_for(sub { log_count(qr/subscription state .* is saved again/) }),
   "tried again, and saved");
is(log_count(qr/saving the subscription state .* failed/), 1, "logged once");
my $st = main::state();
ok($st, "the state file is whole");
ok(-f main::state_file() && ! -p main::state_file(), "a regular file");
cmp_ok($st->{heartbeat}, '>', $held->{heartbeat}, "with a later heartbeat");
is($st->{subscriptions}[0]{id}, $s->{id}, "and the subscription");



=== TEST 2: a graceful stop waits for the save in flight, then saves the last state
--- http_config eval
main::sub_config(2)
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $s = main::healthy();
ok($s, "healthy");
my $helper = helper_pid();
ok(main::plant_fifo(), "a FIFO in place of the temporary file");
my $tid = main::blocked_task($helper);
ok($tid, "a save waits");
my $blocked = time;
ok(wait_for(sub { time - $blocked >= 1.5 && (status()->{subscriptions}{heartbeatAge} // 9) == 0 }),
   "a heartbeat since");
my ($master, @children) = nginx_processes();
kill 'QUIT', $master;
ok(wait_for(sub { !grep { $_ != $helper && alive($_) } @children }), "the workers are gone");
ok(alive($helper), "the helper waits for its save");
my $held = eval { json_decode(main::read_fifo()) };
ok($held, "the held-up save wrote a whole state");
ok(wait_for(sub { !alive($helper) && !alive($master) }), "then the helper exits");
my $st = main::state();
ok($st, "the state file is whole");
cmp_ok($st->{heartbeat}, '>', $held->{heartbeat}, "the last state saved at exit");
is($st->{subscriptions}[0]{id}, $s->{id}, "with the subscription");
ok(! -e main::tmp_file(), "no temporary file left");
ok(start_nginx_again(), "started again");
is(main::healthy()->{id}, $s->{id}, "with the same subscription");
ok(stop_nginx_now('QUIT'), "stopped");



=== TEST 3: killed at any time, the state file is whole, and saves go on
--- http_config eval
main::sub_config(3)
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $s = main::healthy();
ok($s, "healthy");
my $first = wait_for(sub { my $st = main::state(); $st && $st->{subscriptions}[0]{id} ? $st : undef });
ok($first, "saved");
my ($whole, $rounds, $helper) = (0, 12, helper_pid());
for my $i (1 .. $rounds) {
    # at a random moment of the helper's life: saves come every second
    sleep rand(1.2 * valgrind_factor());
    kill 'KILL', $helper;
    wait_for(sub { !alive($helper) });
    my $st = main::state();
    $whole++ if $st && $st->{subscriptions}[0]{id} eq $s->{id};
    $helper = wait_helper_pid($helper);
    last unless $helper;
}
is($whole, $rounds, "whole, with the subscription, after each kill");
ok($helper, "a helper again");
ok(wait_for(sub { my $st = main::state(); $st && $st->{heartbeat} > $first->{heartbeat} + 2 }),
   "saves go on");
is(main::healthy()->{id}, $s->{id}, "the same subscription");
