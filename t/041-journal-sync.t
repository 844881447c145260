# The journal with graph_notify_sync, a journal on a full disk, and call
# records waiting for Graph when NGINX stops.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;
use IO::Socket::INET;

master_on();
workers(2);
no_shuffle();
GraphNotify::start_sim();

our $WRITABLE = $GraphNotify::HTTP_CONFIG;
our $SYNC = $WRITABLE . "    graph_notify_sync on;\n";
our $FULL = $SYNC;
$FULL =~ s{graph_notify_output [^\n]*;}{graph_notify_output /dev/full;};

our $TMPFS;

# $n POSTs of one item each, all sent before any answer is read.
sub post_parallel {
    my ($n, $tag) = @_;
    my (@socks, @ids);
    for my $i (1 .. $n) {
        my $id = "$tag-$i";
        my $body = GraphNotify::basic_body(GraphNotify::basic_item(record => $id));
        my $s = IO::Socket::INET->new(
            PeerAddr => "127.0.0.1:" . Test::Nginx::Socket::server_port()) or die $!;
        print $s "POST /graph/notify HTTP/1.1\r\nHost: x\r\n"
                 . "Content-Type: application/json\r\nConnection: close\r\n"
                 . "Content-Length: " . length($body) . "\r\n\r\n$body";
        push @socks, [$s, $id];
    }
    for my $p (@socks) {
        my $s = $p->[0];
        my $answer = join '', <$s>;
        push @ids, $p->[1] if $answer =~ m{^HTTP/1.1 202};
    }
    return @ids;
}

# $n batches of $size items on $n connections opened first, then sent one
# after the other before any answer is read, so that a worker reads
# several in one turn of its loop; the ids answered 202, the status codes
# and how many of the 503s had a Retry-After.
sub post_together {
    my ($n, $size, $tag) = @_;
    my (@conns, @ok, @codes);
    my $retry = 0;
    for my $b (1 .. $n) {
        my $s = IO::Socket::INET->new(
            PeerAddr => "127.0.0.1:" . Test::Nginx::Socket::server_port()) or die $!;
        push @conns, [$s, [map { sprintf "%s-%02d-%02d", $tag, $b, $_ } 1 .. $size]];
    }
    # a handshake on each first, answered: every connection is accepted
    # before the batches are sent (a worker slowed down, as under
    # valgrind, would otherwise accept one a turn and read one a turn)
    for my $c (@conns) {
        my $s = $c->[0];
        syswrite $s, "POST /graph/notify?validationToken=warm HTTP/1.1\r\n"
            . "Host: x\r\nContent-Length: 0\r\n\r\n";
        my $len;
        while (defined(my $line = <$s>)) {
            $len = $1 if $line =~ /^Content-Length:\s*(\d+)/i;
            last if $line eq "\r\n";
        }
        die "the handshake's answer has no Content-Length" unless defined $len;
        read($s, my $token, $len) == $len or die "the handshake's answer is short";
    }
    for my $c (@conns) {
        my $body = GraphNotify::basic_body(
            map { GraphNotify::basic_item(record => $_) } @{ $c->[1] });
        syswrite $c->[0], "POST /graph/notify HTTP/1.1\r\nHost: x\r\n"
            . "Content-Type: application/json\r\nConnection: close\r\n"
            . "Content-Length: " . length($body) . "\r\n\r\n$body";
    }
    for my $c (@conns) {
        my $s = $c->[0];
        my $answer = join '', <$s>;
        my ($code) = $answer =~ m{^HTTP/1.1 (\d+)};
        push @codes, $code // 0;
        push @ok, @{ $c->[1] } if ($code // 0) == 202;
        $retry++ if ($code // 0) == 503 && $answer =~ /\r\nRetry-After: \d+/i;
    }
    return (\@ok, \@codes, $retry);
}

# The running processes' descriptors of journal files: pid => how many.
sub journal_descriptors {
    my %n;
    for my $pid (GraphNotify::nginx_processes()) {
        for my $fd (glob "/proc/$pid/fd/*") {
            my $to = readlink($fd) // next;
            $n{$pid}++ if $to =~ m{/journal\.[0-9a-f]{16}\.\d+\.\d+$};
        }
    }
    return %n;
}

# The journal's directory on a 256 KB tmpfs, so that its disk can be
# filled; false where mounting is not allowed (the tests are skipped).
sub small_tmpfs {
    my ($dir) = @_;
    return 0 unless system("mount -t tmpfs -o size=256k tmpfs $dir 2>/dev/null") == 0;
    $TMPFS = $dir;
    return 1;
}

# Fills the disk of $dir, then frees $left bytes of it.
sub fill_disk {
    my ($dir, $left) = @_;
    open my $fh, '>', "$dir/filler" or die $!;
    { local $SIG{XFSZ} = 'IGNORE'; 1 while syswrite($fh, "x" x 4096) }
    close $fh;
    truncate "$dir/filler", (-s "$dir/filler") - $left;
}

sub drop_tmpfs {
    my ($dir) = @_;
    my $rc = system("umount", $dir);
    $TMPFS = undef;
    return $rc;
}

END { system("umount", $TMPFS) if $TMPFS; }

run_tests();

__DATA__

=== TEST 1: graph_notify_sync on: answered after the fsync, many requests per fsync
--- http_config eval
$main::SYNC
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @ids = main::post_parallel(40, "sync");
is(scalar @ids, 40, "40 requests answered 202");
my $j = status()->{journal};
ok($j->{sync}, "sync is on");
is($j->{fsyncRequests}, 40, "each answered after an fsync");
cmp_ok($j->{fsyncs}, '>=', 1, "fsyncs done");
cmp_ok($j->{fsyncs}, '<=', 40, "at most one per request");
cmp_ok($j->{fsyncGroupMax}, '>=', 1, "the largest group");
like(status_text("?format=prometheus"), qr/^graph_notify_journal_fsync_requests_total 40$/m,
     "in the Prometheus format");
check_once(\@ids, "sync");
# an fsync task syncs its own copy of the journal's descriptor and closes
# it before the requests it covers are answered: each process holds its
# current journal file only
my %open = main::journal_descriptors();
cmp_ok(scalar(keys %open), '>=', 1, "a worker holds its journal file");
is(join(",", grep { $open{$_} > 1 } sort keys %open), "",
   "no process holds a journal file more than once");



=== TEST 2: sync on, output failing, every process killed: nothing lost
--- http_config eval
$main::FULL
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @acked = post_items(4, 10, "synckill");
is(scalar @acked, 40, "40 acked");
ok(wait_for(sub { status()->{helper}{outputErrors} >= 1 }), "the output fails");
ok(kill_nginx(), "every process killed");
rewrite_conf("graph_notify_output /dev/full;", "graph_notify_output logs/graph_notify.ndjson;");
ok(start_nginx_again(), "started again");
check_once(\@acked, "sync, kill -9");
stop_nginx_now('QUIT');



=== TEST 3: the journal's disk is full: 503 with Retry-After, one log line, nothing acked lost
--- http_config eval
$main::WRITABLE
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $dir = GraphNotify::servroot() . "/graph_notify_temp";
ok(stop_nginx_now('QUIT'), "stopped");
SKIP: {
    skip("mounting a tmpfs is not allowed here", 9)
        unless main::small_tmpfs($dir);
    ok(start_nginx_again(), "started on a 256 KB journal directory");
    my @acked = post_items(2, 10, "before");
    is(scalar @acked, 20, "accepted while there is room");
    main::fill_disk($dir, 8192);
    my (@codes, $retry);
    for my $b (1 .. 8) {
        my @ids = map { "full-$b-$_" } 1 .. 30;
        my $res = GraphNotify::http_post("/graph/notify",
            GraphNotify::basic_body(map { GraphNotify::basic_item(record => $_) } @ids));
        push @codes, $res->{status};
        push @acked, @ids if $res->{status} == 202;
        $retry = $res->{headers}{'retry-after'} if $res->{status} == 503;
    }
    cmp_ok(scalar(grep { $_ == 503 } @codes), '>=', 6, "refused with 503 (@codes)");
    is(scalar(grep { $_ != 503 && $_ != 202 } @codes), 0, "nothing else");
    ok($retry, "with Retry-After");
    is(log_count(qr/graph_notify: writing the journal .* failed/), 1, "one log line");
    cmp_ok(status()->{journal}{failures}, '>=', 6, "counted");
    unlink "$dir/filler";
    push @acked, post_items(1, 10, "after");
    ok((grep { /^after-/ } @acked) == 10, "accepted again once there is room");
    check_once(\@acked, "full disk");
    stop_nginx_now('QUIT');
    is(main::drop_tmpfs($dir), 0, "unmounted");
}



=== TEST 4: call records waiting for Graph when nginx stops: fetched and written once after the start
--- http_config eval
GraphNotify::graph_config()
--- request
GET /graph/status
--- error_code: 200
--- post_check
GraphNotify::sim_reset();
my @r = map { sprintf "c4000000-0000-4000-8000-%012d", $_ } 1 .. 4;
GraphNotify::sim_record(id => $_, sessions => 2) for @r;
GraphNotify::sim_faults(latency_ms => 5000);
is(GraphNotify::http_post("/graph/notify", GraphNotify::basic_body(
    map { GraphNotify::basic_item(record => $_) } @r))->{status}, 202, "acked");
ok(wait_for(sub { (status()->{graph}{running} // 0) > 0 }), "fetches in flight");
ok(stop_nginx_now('QUIT'), "nginx -s quit");
GraphNotify::sim_faults();
ok(start_nginx_again(), "started again");
record_lines(4, 30);
status_is(sub { $_[0]{queue}{items} }, 0, "the queue is empty");
my @lines = record_lines(4);
is(join(",", sort map { $_->{callRecord}{id} } @lines), join(",", sort @r), "each record written once");
is(status()->{journal}{recovered}, 4, "the four notifications recovered");
stop_nginx_now('QUIT');



=== TEST 5: graph_notify_sync on without a thread pool is refused at nginx -t
--- http_config
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_thread_pool off;
    graph_notify_sync on;
--- must_die
--- error_log
"graph_notify_sync on" needs a thread pool, and graph_notify_thread_pool is off or NGINX was built without threads



=== TEST 6: sync on: the done log and the checkpoint go through the helper's syncs; killed while writing, nothing lost or repeated
--- http_config eval
$main::SYNC
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $dir = GraphNotify::servroot() . "/graph_notify_temp";
my $ck0 = status()->{journal}{checkpoints};
# batches go on across checkpoints (one a second): done records are
# written while a checkpoint waits for its syncs
my (@acked, $b);
my $end = time + 2.5;
while (time < $end) {
    push @acked, post_items(1, 5, "ck" . $b++);
}
cmp_ok(scalar @acked, '>=', 50, "batches acked while checkpoints were taken");
ok(wait_for(sub { status()->{journal}{checkpoints} >= $ck0 + 2 }),
   "checkpoints completed through their syncs");
ok(wait_for(sub { (grep { $_->{resourceData}{id} =~ /^ck/ }
                   map { json_decode($_) } output_lines()) == @acked }),
   "everything written");
ok(wait_for(sub { -e "$dir/journal.state" && !-e "$dir/journal.state.tmp"
                  && -z "$dir/journal.done" }),
   "idle: the checkpoint in place, no temporary file, the done log empty");
push @acked, post_items(10, 5, "ckafter");
ok(wait_for(sub { status()->{queue}{items} == 0 }), "written");
ok(kill_nginx(), "every process killed");
ok(start_nginx_again(), "started again");
check_once(\@acked, "sync, checkpoints, kill -9");
stop_nginx_now('QUIT');



=== TEST 7: sync on, the output cannot be synced: the checkpoint's failure logged once, the previous one stands
--- http_config eval
$main::FULL
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @acked = post_items(3, 1, "ckfail");
is(scalar @acked, 3, "acked");
ok(wait_for(sub { log_count(qr/syncing the checkpoint .* failed/) >= 1 }),
   "the checkpoint could not be synced (fdatasync of /dev/full fails)");
my $errors;
ok(wait_for(sub { ($errors = status()->{helper}{outputErrors}) >= 1 }),
   "output failing");
# the helper tries the output again at each of its polls, once a second
ok(wait_for(sub { status()->{helper}{outputErrors} >= $errors + 2 }),
   "two more polls");
is(log_count(qr/syncing the checkpoint .* failed/), 1, "logged once");
is(log_count(qr/syncing "\/dev\/full" failed/), 1,
   "tried again a minute later, not every second");
is(status()->{journal}{checkpoints}, 0, "no checkpoint replaced");



=== TEST 8: the batches of one turn share one write; on a full disk every batch of a failed write is answered 503 and nothing of it is kept
--- http_config eval
$main::WRITABLE
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $dir = GraphNotify::servroot() . "/graph_notify_temp";
ok(stop_nginx_now('QUIT'), "stopped");
SKIP: {
    skip("mounting a tmpfs is not allowed here", 10)
        unless main::small_tmpfs($dir);
    ok(start_nginx_again(), "started on a 256 KB journal directory");
    my @acked;
    my ($round, $shared) = (0, 0);
    while (!$shared && $round++ < 10) {
        my ($ok, $codes) = post_together(8, 2, "turn$round");
        push @acked, @$ok;
        is(scalar @$ok, 16, "accepted while there is room (@$codes)") or last;
        my $j = status()->{journal};
        $shared = $j->{writes} < $j->{appends};
    }
    ok($shared, "batches read in one turn are written with one write() "
                . "(writes < appends)");
    main::fill_disk($dir, 8192);
    my $failures = status()->{journal}{failures};
    # 60 items (about 30 KB) a batch: more than the 8 KB left plus what
    # the helper may free meanwhile (its done log, cut at a checkpoint),
    # so that even a batch written alone, as under valgrind, cannot fit
    my ($ok, $codes, $retry) = post_together(8, 60, "full");
    is(scalar @$ok, 0, "none accepted on the full disk (@$codes)");
    is($retry, 8, "each answered 503 with Retry-After");
    is(status()->{journal}{failures} - $failures, 8, "each counted");
    unlink "$dir/filler";
    push @acked, post_items(1, 10, "after");
    ok((grep { /^after-/ } @acked) == 10, "accepted again once there is room");
    check_once(\@acked, "a turn's write on a full disk");
    stop_nginx_now('QUIT');
    is(main::drop_tmpfs($dir), 0, "unmounted");
}
