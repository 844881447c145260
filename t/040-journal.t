# The journal: every item answered 202 reaches the output exactly once,
# whatever happens to the processes and the shared memory meanwhile.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

master_on();
workers(2);
no_shuffle();

# Items are told apart by their record id; while the output is /dev/full
# they stay queued (and journaled).
$GraphNotify::HTTP_CONFIG =~ s{graph_notify_output [^\n]*;}
                              {graph_notify_output /dev/full;};

sub writable {
    rewrite_conf("graph_notify_output /dev/full;",
                 "graph_notify_output logs/graph_notify.ndjson;");
}

# CRC-32C, bit by bit (reflected polynomial 0x82f63b78)
sub crc32c {
    my ($s) = @_;
    my $crc = 0xffffffff;
    for my $b (unpack("C*", $s)) {
        $crc ^= $b;
        $crc = ($crc & 1) ? ($crc >> 1) ^ 0x82f63b78 : $crc >> 1 for 1 .. 8;
    }
    return $crc ^ 0xffffffff;
}

# The entries of a journal file: [magic, crc, n, payload] each.
sub entries {
    my ($file) = @_;
    open my $fh, '<:raw', $file or die "$file: $!";
    local $/;
    my $s = <$fh>;
    close $fh;
    my @e;
    while (length $s >= 16) {
        my ($magic, $len, $crc, $n) = unpack("LLLL", $s);
        last if length $s < 16 + $len;
        push @e, [$magic, $crc, $n, substr($s, 16, $len)];
        substr($s, 0, 16 + $len, "");
    }
    return @e;
}

sub queued {
    my ($n) = @_;
    ok(wait_for(sub { status()->{helper}{outputErrors} >= 1
                      && status()->{queue}{items} == $n }),
       "$n items held while the output fails");
}

run_tests();

__DATA__

=== TEST 1: graceful quit, then start: the queue comes back from the journal
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @acked = post_items(3, 10, "quit");
is(scalar @acked, 30, "30 items acked");
main::queued(30);
ok(scalar(journal_files()) >= 1, "journal files on disk");
ok(stop_nginx_now('QUIT'), "nginx -s quit");
main::writable();
ok(start_nginx_again(), "started again");
my $st = wait_for(sub {
    my $s = eval { status() };
    $s && $s->{helper}{pid} && !$s->{journal}{recovering} ? $s : undef;
});
is($st->{journal}{recovered}, 30, "recovering ends once the 30 are queued again");
check_once(\@acked, "quit");
$st = status();
is($st->{journal}{recovered}, 30, "30 recovered");
is($st->{journal}{recoveries}, 1, "one recovery");
ok(wait_for(sub { status()->{journal}{files} == 0 }), "consumed journals removed");
stop_nginx_now('QUIT');



=== TEST 2: fast stop (SIGTERM), then start
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @acked = post_items(4, 25, "stop");
is(scalar @acked, 100, "100 items acked");
main::queued(100);
ok(stop_nginx_now('TERM'), "nginx -s stop");
main::writable();
ok(start_nginx_again(), "started again");
check_once(\@acked, "stop");
stop_nginx_now('QUIT');



=== TEST 3: SIGKILL of every nginx process, then start
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @acked = post_items(5, 20, "kill");
main::queued(100);
ok(kill_nginx(), "every process killed");
main::writable();
ok(start_nginx_again(), "started again");
check_once(\@acked, "kill -9");
stop_nginx_now('QUIT');



=== TEST 4: written items are not written again after a crash
--- request
GET /graph/status
--- error_code: 200
--- post_check
main::writable();
ok(reload_nginx(), "writable output");
my @acked = post_items(3, 10, "done");
check_once(\@acked, "before");
ok(kill_nginx(), "every process killed");
ok(start_nginx_again(), "started again");
my @more = post_items(1, 5, "after");
check_once([@acked, @more], "after the crash");
is(status()->{journal}{recovered}, 0, "nothing queued again");
stop_nginx_now('QUIT');



=== TEST 5: reload with a resized zone: the old zone's items are recovered
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @acked = post_items(3, 10, "resize");
main::queued(30);
rewrite_conf("graph_notify_zone graph_notify:1m;", "graph_notify_zone graph_notify:2m;");
main::writable();
ok(reload_nginx(), "reloaded with a 2m zone");
check_once(\@acked, "resized");
is(status()->{queue}{zoneSize}, 2097152, "the new zone");
is(status()->{journal}{recovered}, 30, "recovered from the old zone's journal");
stop_nginx_now('QUIT');



=== TEST 6: binary upgrade (USR2, WINCH, QUIT the old master)
--- request
GET /graph/status
--- error_code: 200
--- post_check
SKIP: {
skip("a binary upgrade re-executes nginx, not valgrind", 7) if $ENV{TEST_NGINX_USE_VALGRIND};
my @acked = post_items(3, 10, "upgrade");
main::queued(30);
my $old = nginx_pid();
main::writable();
kill 'USR2', $old;
ok(wait_for(sub { my $p = nginx_pid(); $p && $p != $old }), "a new master");
my @more = post_items(1, 10, "during");
is(scalar @more, 10, "the new generation accepts meanwhile");
kill 'WINCH', $old;
kill 'QUIT', $old;
ok(wait_for(sub { !alive($old) }), "old master gone");
check_once([@acked, @more], "upgrade");
}
stop_nginx_now('QUIT');



=== TEST 7: quit while request bodies are still being sent
--- request
GET /graph/status
--- error_code: 200
--- post_check
use IO::Socket::INET;
main::writable();
ok(reload_nginx(), "writable output");
my @ids = map { "inflight-$_" } 1 .. 5;
my $body = GraphNotify::basic_body(map { GraphNotify::basic_item(record => $_) } @ids);
my $requests = status()->{requests};
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:" . Test::Nginx::Socket::server_port()) or die $!;
print $s "POST /graph/notify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         . "Content-Length: " . length($body) . "\r\nConnection: close\r\n\r\n"
         . substr($body, 0, 100);
# a worker reads the body (counted as it starts): the quit cannot drop the
# connection with the listening sockets any more
ok(wait_for(sub { status()->{requests} > $requests }), "the body is being read");
my @pids = nginx_processes();
kill 'QUIT', $pids[0];
ok(wait_for(sub { log_count(qr/gracefully shutting down/) >= 1 }), "shutting down");
print $s substr($body, 100);
my $answer = join '', <$s>;
my ($code) = $answer =~ m{^HTTP/1.1 (\d+)};
ok($code == 202 || $code == 503, "answered $code");
ok(wait_for(sub { !grep { alive($_) } @pids }), "all gone");
ok(start_nginx_again(), "started again");
check_once($code == 202 ? \@ids : [], "bodies in flight");
stop_nginx_now('QUIT');



=== TEST 8: a torn entry at the end of a journal: skipped, the rest recovered
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @acked = post_items(3, 10, "torn");
main::queued(30);
ok(kill_nginx(), "every process killed");
my @f = sort { -s $b <=> -s $a } journal_files();
my $size = -s $f[0];
open my $fh, '>>', $f[0] or die $!;
print $fh pack("LLLL", 0x314a4e47, 5000, 0, 3), "x" x 40;
close $fh;
main::writable();
ok(start_nginx_again(), "started again");
check_once(\@acked, "torn tail");
ok(wait_for(sub { log_count(qr/graph_notify: journal .* a torn entry at offset $size /) == 1 }),
   "the torn entry logged");
is(status()->{journal}{torn}, 1, "counted");
stop_nginx_now('QUIT');



=== TEST 9: entries of CRC-32C ("GNJ2"), and of zlib's CRC-32 ("GNJ1", as earlier versions wrote them) recover alike
--- request
GET /graph/status
--- error_code: 200
--- post_check
use Compress::Zlib ();
is(main::crc32c("123456789"), 0xe3069283, "CRC-32C check value");
my @acked = post_items(6, 5, "crc");
main::queued(30);
ok(kill_nginx(), "every process killed");
my ($entries, $good, $old) = (0, 0, 0);
for my $f (journal_files()) {
    my @e = main::entries($f);
    my $out = "";
    for my $i (0 .. $#e) {
        my ($magic, $crc, $n, $payload) = @{ $e[$i] };
        $entries++;
        $good++ if $magic == 0x324a4e47 && $crc == main::crc32c($payload);
        # every other entry as an earlier version wrote it
        if ($i % 2 == 0) {
            $magic = 0x314a4e47;
            $crc = Compress::Zlib::crc32($payload);
            $old++;
        }
        $out .= pack("LLLL", $magic, length $payload, $crc, $n) . $payload;
    }
    open my $fh, '>:raw', $f or die "$f: $!";
    print $fh $out;
    close $fh;
}
is($entries, 6, "6 entries");
is($good, 6, "each one GNJ2 with its CRC-32C");
ok($old >= 3, "$old rewritten as GNJ1");
main::writable();
ok(start_nginx_again(), "started again");
check_once(\@acked, "GNJ1 and GNJ2");
is(status()->{journal}{torn}, 0, "none torn");
is(status()->{journal}{recovered}, 30, "30 recovered");
stop_nginx_now('QUIT');



=== TEST 10: a journal larger than the zone's room: recovering until every item is queued again
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @acked = post_items(3, 10, "room");
main::queued(30);
ok(stop_nginx_now('QUIT'), "nginx -s quit");
rewrite_conf("graph_notify_zone graph_notify:1m;",
             "graph_notify_zone graph_notify:1m max_items=10;");
ok(start_nginx_again(), "started again with room for 10 items");
main::queued(10);
ok(status()->{journal}{recovering}, "recovering while 20 items wait for room");
like(status_text("?format=prometheus"), qr/^graph_notify_journal_recovering 1$/m,
     "the gauge says so");
main::writable();
ok(reload_nginx(), "reloaded with a writable output");
check_once(\@acked, "room");
ok(!status()->{journal}{recovering}, "recovering no longer");
like(status_text("?format=prometheus"), qr/^graph_notify_journal_recovering 0$/m,
     "the gauge too");
stop_nginx_now('QUIT');
