# The subscriptions' state file without a master process, where the
# helper's event loop serves requests too: a save held up on the disk
# holds up no request, and a graceful stop saves the last state.
#
# A save is held up with a FIFO in place of the state's temporary file:
# opening it for writing waits until the test opens it for reading, and
# the save then fails (a FIFO cannot be synced) and is tried again.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;
use SubscriptionState;

master_off();
no_shuffle();
GraphNotify::start_sim();

run_tests();

__DATA__

=== TEST 1: a save held up on the disk holds up no request; a graceful stop waits for it and saves the last state
--- http_config eval
main::sub_config(1)
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $s = main::healthy();
ok($s, "healthy");
my $pid = nginx_pid();
is(scalar(nginx_processes()), 1, "one process");
ok(main::plant_fifo(), "a FIFO in place of the temporary file");
my $tid = main::blocked_task($pid);
ok($tid, "a save waits in open()");
isnt($tid, $pid, "on a thread, not on the event loop");
my $blocked = time;
my $res = http_post(notify_url(), basic_body(basic_item(record => 'c3500000-0000-4000-8000-000000000001')));
is($res->{status}, 202, "a notification answered meanwhile");
ok(wait_for(sub { time - $blocked >= 1.5 && (status()->{subscriptions}{heartbeatAge} // 9) == 0 }),
   "the status page answered, the heartbeat goes on");
kill 'QUIT', $pid;
ok(wait_for(sub { log_count(qr/SIGQUIT.*shutting down/) }), "stopping");
ok(wait_for(sub { (read_file("/proc/$pid/wchan") // '') =~ /futex/ }),
   "the process waits for the save");
my $held = eval { json_decode(main::read_fifo()) };
ok($held, "the held-up save wrote a whole state");
ok(wait_for(sub { !alive($pid) }), "then exits");
my $st = main::state();
ok($st, "the state file is whole");
cmp_ok($st->{heartbeat}, '>', $held->{heartbeat}, "the last state saved at exit");
is($st->{subscriptions}[0]{id}, $s->{id}, "with the subscription");
ok(! -e main::tmp_file(), "no temporary file left");
ok(start_nginx_again(), "started again");
ok(wait_for(sub { log_count(qr/subscription $s->{id} .* found/) }), "the subscription found in the state file");
ok(stop_nginx_now('QUIT'), "stopped");
