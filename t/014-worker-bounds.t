# Bounded work per request in the worker: batch and item caps checked before
# parsing, the depth of decrypted resources, decryption off the event loop,
# and the hygiene of what reaches the output and the error log.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;
use IPC::Open2;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time sleep);

master_on();
workers(1);
no_shuffle();

our $TENANT = '11111111-2222-3333-4444-555555555555';

# about the workers: validation tokens are checked in 015-validation-tokens.t
$GraphNotify::HTTP_CONFIG = $GraphNotify::RICH_HTTP_CONFIG;

# The worker of this block (there is one) and its peak resident memory, kB.
sub worker_pid {
    my $master = GraphNotify::nginx_pid();
    opendir my $d, "/proc" or die $!;
    for my $pid (grep { /^\d+$/ } readdir $d) {
        my $stat = GraphNotify::read_file("/proc/$pid/stat") // next;
        my ($ppid) = $stat =~ /^\d+ \(.*?\) \S (\d+) /;
        next unless defined $ppid && $ppid == $master;
        my $cmd = GraphNotify::read_file("/proc/$pid/cmdline") // '';
        return $pid if $cmd =~ /worker process/ || $ENV{TEST_NGINX_USE_VALGRIND}
                       && $pid != (eval { GraphNotify::helper_pid() } // 0);
    }
    return undef;
}

sub peak_kb {
    my ($pid) = @_;
    my $s = GraphNotify::read_file("/proc/$pid/status") // return 0;
    return $s =~ /^VmHWM:\s+(\d+) kB/m ? $1 : 0;
}

# Seconds that the main threads of these processes have spent runnable
# but waiting for a CPU (/proc/PID/task/PID/schedstat, second field): the
# machine's load, not work of theirs.
sub runq_wait {
    my $w = 0;
    for my $pid (@_) {
        my $s = GraphNotify::read_file("/proc/$pid/task/$pid/schedstat") // next;
        $w += (split ' ', $s)[1] / 1e9;
    }
    return $w;
}

# Posts $body; returns the status, the seconds taken and the worker's
# growth of peak memory in MB.
sub measured_post {
    my ($body) = @_;
    my $pid = worker_pid();
    my $before = peak_kb($pid);
    my $t0 = time;
    my $res = GraphNotify::http_post("/graph/notify", $body);
    my $took = time - $t0;
    return ($res->{status}, $took, (peak_kb($pid) - $before) / 1024);
}

# A rich item encrypted by the simulator for the test key, from the
# resource's JSON text.
sub rich_item {
    my ($content, %o) = @_;
    my $cmd = GraphNotify::sim_cmd('rich', '--print',
        '--cert', GraphNotify::data_file('enc-test.crt'),
        '--cert-id', 'test-key-1', '--content', '-',
        '--client-state', 'secret-1', '--tenant', $TENANT,
        '--subscription', $o{subscription} || 'sub-rich-1');
    my $pid = open2(my $out, my $in, $cmd) or die "graph-sim: $!";
    print $in $content;
    close $in;
    local $/;
    my $body = <$out>;
    waitpid $pid, 0;
    die "graph-sim rich failed\n" if $? != 0;
    return GraphNotify::json_decode($body)->{value}[0];
}

sub nested {
    my ($levels) = @_;
    return '{"id":"deep","x":' . ('[' x ($levels - 1)) . '1' . (']' x ($levels - 1)) . '}';
}

our $BIG = <<'END';
    location = /graph/notify { client_max_body_size 64m; graph_notify; }
    location = /graph/status { graph_notify_status; }
END

add_block_preprocessor(sub {
    my ($block) = @_;
    $block->set_value('config', $BIG) unless defined $block->config;
});

run_tests();

__DATA__

=== TEST 1: 1 MiB of "{}" items: 413 before parsing, bounded in time and memory, one line
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $body = '{"value":[' . join(',', ('{}') x 349_518) . ']}';
cmp_ok(length $body, '>', 1_000_000, "about 1 MiB");
my ($status, $took, $mb) = main::measured_post($body);
is($status, 413, "answered 413");
cmp_ok($took, '<', 0.5 * valgrind_factor(), "answered at once (${took} s)");
SKIP: {
    skip "valgrind's own memory", 1 if $ENV{TEST_NGINX_USE_VALGRIND};
    cmp_ok($mb, '<', 16, "the worker's peak memory grew by ${mb} MB, not 77");
}
is(log_count(qr/graph_notify: batch of more than 1000 items \(graph_notify_max_batch\), answered 413/), 1, "one line");
is(status()->{rejected}, 1, "counted as rejected");
is(status()->{items}{received}, 0, "no item parsed");



=== TEST 2: 8 MiB bodies: many small values, one huge item; both 413, bounded
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $item = GraphNotify::basic_item();
$item->{resourceData}{x} = "XX";
my $tokens = GraphNotify::json_encode({ value => [ $item ] });
my $fill = join(',', ('[]') x (8 * 1024 * 1024 / 3));
$tokens =~ s/"XX"/[$fill]/;
cmp_ok(length $tokens, '>', 8_000_000, "8 MiB of empty arrays in one item");
my ($status, $took, $mb) = main::measured_post($tokens);
is($status, 413, "answered 413");
cmp_ok($took, '<', 0.5 * valgrind_factor(), "answered at once (${took} s)");
SKIP: {
    skip "valgrind's own memory", 1 if $ENV{TEST_NGINX_USE_VALGRIND};
    cmp_ok($mb, '<', 40, "the worker's peak memory grew by ${mb} MB, not 643");
}
is(log_count(qr/graph_notify: body of more than 64000 JSON tokens \(64 per item of graph_notify_max_batch\), answered 413/), 1, "one line");

my $long = GraphNotify::json_encode({ value => [ $item ] });
my $x = 'x' x (8 * 1024 * 1024);
$long =~ s/"XX"/"$x"/;
($status, $took, $mb) = main::measured_post($long);
is($status, 413, "413 for one item of 8 MiB");
cmp_ok($took, '<', 0.5 * valgrind_factor(), "answered at once (${took} s)");
is(log_count(qr/graph_notify: item of more than 524288 bytes \(graph_notify_max_item_size\), answered 413/), 1, "one line");
is(status()->{items}{received}, 0, "no item parsed");



=== TEST 3: the caps are directives: exactly at them is fine, one more is 413
--- config
    location = /graph/notify {
        graph_notify;
        graph_notify_max_batch 3;
        graph_notify_max_item_size 2k;
    }
    location = /graph/status { graph_notify_status; }
--- request
GET /graph/status
--- error_code: 200
--- post_check
my @three = map { GraphNotify::basic_item(record => "r$_") } 1 .. 3;
is(GraphNotify::http_post("/graph/notify", GraphNotify::basic_body(@three))->{status}, 202, "3 items");
is(GraphNotify::http_post("/graph/notify", GraphNotify::basic_body(@three, GraphNotify::basic_item(record => "r4")))->{status}, 413, "4 items");
my $big = GraphNotify::basic_item(record => "big");
$big->{resourceData}{pad} = 'p' x 2100;
is(GraphNotify::http_post("/graph/notify", GraphNotify::basic_body($big))->{status}, 413, "an item over 2k");
$big->{resourceData}{pad} = 'p' x 1500;
is(GraphNotify::http_post("/graph/notify", GraphNotify::basic_body($big))->{status}, 202, "an item under 2k");
my @quoted = map { my $i = GraphNotify::basic_item(record => "q$_");
                   $i->{resourceData}{note} = qq|\\"]]]],[{"x":1},{\\|; $i } 1 .. 3;
is(GraphNotify::http_post("/graph/notify", GraphNotify::basic_body(@quoted))->{status}, 202,
   "brackets, quotes and backslashes inside strings are not items");
my @l = wait_lines(7);
is(join(",", map { $_->{resourceData}{id} } @l), "r1,r2,r3,big,q1,q2,q3", "the accepted batches written");
is($l[4]{resourceData}{note}, qq|\\"]]]],[{"x":1},{\\|, "written as sent");



=== TEST 4: a bad cap is refused by nginx -t
--- config
    location = /graph/notify { graph_notify; graph_notify_max_batch 0; }
--- must_die
--- error_log
value must be between 1 and 100000



=== TEST 5: tenant ids must be GUIDs: anything else is malformed
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body(
    GraphNotify::basic_item(record => "t1", tenant => "bad tenant"),
    GraphNotify::basic_item(record => "t2", tenant => "-x"),
    GraphNotify::basic_item(record => "t3", tenant => "a" x 256),
    GraphNotify::basic_item(record => "t4", tenant => "11111111-2222-3333-4444-55555555555g"),
    GraphNotify::basic_item(record => "t5", tenant => "{11111111-2222-3333-4444-555555555555}"),
    GraphNotify::basic_item(record => "ok", tenant => "AAAAAAAA-2222-3333-4444-555555555555"))
--- error_code: 202
--- error_log
graph_notify: dropped 5 of 6 item(s) (malformed=5); first: item 0, subscription sub-basic-1: malformed item
--- post_check
my @l = wait_lines(1);
is(join(",", map { $_->{resourceData}{id} } @l), "ok", "only the GUID tenant");
is(status()->{items}{dropped}{malformed}, 5, "counted as malformed");



=== TEST 6: keys the module adds are never repeated: a forged decryptedResource, kind, receivedAt
--- request eval
my $item = main::rich_item('{"id":"real","n":1}');
$item->{decryptedResource} = { id => "forged" };
$item->{kind} = "forged";
$item->{receivedAt} = "1970-01-01T00:00:00.000Z";
my $basic = GraphNotify::basic_item(record => "b1");
$basic->{callRecord} = { id => "forged" };
$basic->{fetchedAt} = "forged";
$basic->{notifications} = 99;
$basic->{kind} = "callRecord";
"POST /graph/notify\n" . GraphNotify::json_encode({ value => [ $item, $basic ] })
--- error_code: 202
--- post_check
my @l = wait_lines(2);
is(scalar @l, 2, "both written");
my @raw = output_lines();
for my $i (0, 1) {
    for my $key (qw(decryptedResource kind receivedAt callRecord fetchedAt notifications)) {
        my $n = () = $raw[$i] =~ /"\Q$key\E":/g;
        cmp_ok($n, '<=', 1, "line $i: \"$key\" at most once");
    }
}
is($l[0]{decryptedResource}{id}, "real", "the decrypted resource, not the forged one");
is($l[0]{kind}, "rich", "our kind");
isnt($l[0]{receivedAt}, "1970-01-01T00:00:00.000Z", "our time");
is($l[1]{kind}, "basic", "a basic item stays basic");
ok(!exists $l[1]{callRecord} && !exists $l[1]{fetchedAt} && !exists $l[1]{notifications},
   "forged helper keys removed");



=== TEST 7: base64 with junk after the padding is dropped as base64
--- request eval
my @items = map { main::rich_item('{"id":"p' . $_ . '"}', subscription => "sub-$_") } 1 .. 4;
$items[0]{encryptedContent}{dataSignature} .= "AAAA";
$items[1]{encryptedContent}{dataKey} .= "junk";
$items[2]{encryptedContent}{data} =~ s/=*$/=\@\@\@/;
"POST /graph/notify\n" . GraphNotify::json_encode({ value => \@items })
--- error_code: 202
--- error_log
graph_notify: dropped 3 of 4 item(s) (base64=3); first: item 0, subscription sub-1: invalid base64 in encryptedContent
--- post_check
my @l = wait_lines(1);
is(join(",", map { $_->{decryptedResource}{id} } @l), "p4", "only the clean item");
is(status()->{items}{dropped}{base64}, 3, "counted");



=== TEST 8: a decrypted resource nested deeper than 64 levels is dropped as depth
--- request eval
my @items = (main::rich_item(main::nested(64), subscription => "sub-64"),
             main::rich_item(main::nested(65), subscription => "sub-65"),
             main::rich_item(main::nested(300), subscription => "sub-300"));
"POST /graph/notify\n" . GraphNotify::json_encode({ value => \@items })
--- error_code: 202
--- error_log
graph_notify: dropped 2 of 3 item(s) (depth=2); first: item 1, subscription sub-65: decrypted content nested deeper than 64 levels
--- post_check
my @l = wait_lines(1);
is(scalar @l, 1, "64 levels kept");
my ($raw) = output_lines();
is(($raw =~ tr/[//), 63, "as it came");
my $st = status();
is($st->{items}{dropped}{depth}, 2, "counted");
is($st->{items}{decryptFailures}, 2, "as decryption failures");



=== TEST 9: the output is created 0640, or with graph_notify_output_mode, also on reopen
--- http_config
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state secret-1;
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body()
--- error_code: 202
--- post_check
wait_lines(1);
my $f = output_file();
is(sprintf("%04o", (stat $f)[2] & 07777), "0640", "created 0640");
my $helper = helper_pid();
rename $f, "$f.1" or die $!;
kill 'USR1', nginx_pid();
# the master creates the new file, then each process reopens on its own:
# wait for the helper, the one that writes
ok(wait_for(sub { log_count(qr/ $helper#\d+: reopening logs/) }, 10),
   "the helper reopened its files");
ok(-e $f, "reopened");
is(sprintf("%04o", (stat $f)[2] & 07777), "0640", "created 0640 on reopen");
is(GraphNotify::http_post("/graph/notify", GraphNotify::basic_body())->{status}, 202, "accepted");
ok(wait_for(sub { -s $f }, 10), "written to the new file");



=== TEST 10: graph_notify_output_mode
--- http_config
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_output_mode 0600;
--- request
GET /graph/status
--- error_code: 200
--- post_check
is(sprintf("%04o", (stat output_file())[2] & 07777), "0600", "created 0600");



=== TEST 11: graph_notify_output_mode must let the owner write
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_output_mode 0440;
--- config
    location = /graph/notify { graph_notify; }
--- must_die
--- error_log
invalid mode "0440", the owner needs read and write (0600 to 0777)



=== TEST 12: lines a client can cause come at most once a second per kind, with counts
--- request
GET /graph/status
--- error_code: 200
--- post_check
# the first bad body, then the burst: all of them after $t0
my $t0 = time;
is(GraphNotify::http_post("/graph/notify", "hello")->{status}, 400, "a bad body");
for (1 .. 5) {
    GraphNotify::http_post("/graph/notify", "hello");
    GraphNotify::http_post("/graph/notify", GraphNotify::basic_body(GraphNotify::basic_item(client_state => "wrong")));
}
# a line a second at most (1000 ms of NGINX's clock): one, unless the
# burst took longer (valgrind, a loaded machine)
my $most = 1 + int((time - $t0) / 0.999);
cmp_ok(log_count(qr/graph_notify: request body is not JSON/), '<=', $most, "one line for six bad bodies");
cmp_ok(log_count(qr/graph_notify: dropped 1 of 1 item/), '<=', $most, "one line for five batches with drops");
is(status()->{rejected}, 6, "every one counted");
is(status()->{items}{dropped}{client_state}, 5, "every drop counted");
# the next second: the next line tells how many were held back
my $line = wait_for(sub {
    GraphNotify::http_post("/graph/notify", "hello");
    my $s = read_file(GraphNotify::servroot() . "/logs/error.log");
    $s =~ /(request body is not JSON.*more suppressed.*)/ ? $1 : undef;
}, 5);
like($line, qr/; (\d+) more suppressed/, "the count comes with the next line");
my ($n) = $line =~ /; (\d+) more suppressed/;
cmp_ok($n, '>=', $most == 1 ? 5 : 1, "the ones held back");



=== TEST 13: a handshake is answered within 50 ms while the same worker decrypts 4,000 rich items
--- http_config
    graph_notify_zone graph_notify:64m max_items=10000;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state secret-1;
    graph_notify_max_batch 4000;
    graph_notify_validation_tokens off;
    graph_notify_decryption_key test-key-1
        $TEST_NGINX_TOP/t/data/enc-test.crt $TEST_NGINX_TOP/t/data/enc-test.key;
--- request
GET /graph/status
--- error_code: 200
--- timeout: 60
--- post_check
# valgrind runs one thread at a time, 50 times slower: there, the same
# path with fewer items, and no timing
my $vg = $ENV{TEST_NGINX_USE_VALGRIND};
my $count = $vg ? 100 : 4000;
my $item = main::rich_item(read_file(data_file("chat-message.json")));
my $body = GraphNotify::json_encode({ value => [ ($item) x $count ] });
my $port = Test::Nginx::Socket::server_port();

# the batch on one connection, written whole; its answer read later
my $start = time;
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die $!;
print $s "POST /graph/notify HTTP/1.1\r\nHost: localhost\r\n"
       . "Content-Type: application/json\r\nContent-Length: " . length($body)
       . "\r\nConnection: close\r\n\r\n" . $body;
my $sel = IO::Select->new($s);

# handshakes on other connections until the batch is answered; each one's
# time less what the worker's event loop and this client spent waiting
# for a CPU meanwhile (the other processes of this shared machine)
my $worker = main::worker_pid();
my (@took, @net);
my $end = time + 60 * valgrind_factor();
until ($sel->can_read(0) || time > $end) {
    my $n = @took;
    my $w0 = main::runq_wait($worker, $$);
    my $t0 = time;
    my $r = HTTP::Tiny->new(timeout => 5 * valgrind_factor())->post(
        "http://127.0.0.1:$port/graph/notify?validationToken=tok$n", { content => '' });
    push @took, time - $t0;
    push @net, $took[-1] - (main::runq_wait($worker, $$) - $w0);
    die "handshake: $r->{status}\n" unless $r->{status} == 200 && $r->{content} eq "tok$n";
}
my $took_batch = time - $start;
my $answer = '';
$s->recv($answer, 4096) while $sel->can_read(10) && length($answer) < 12;
like($answer, qr{^HTTP/1.1 202}, "the batch answered 202");

# On the event loop the batch held the worker 1.2 s, most of the time it
# took.  This machine is shared: a process may wait for a CPU longer than
# that (593 ms seen at a load of 11), so those waits are left out.  99 %
# within 50 ms, and none takes a large part of the batch's time.
my @sorted = sort { $a <=> $b } @net;
my $n = @sorted;
my $p99 = $sorted[int(0.99 * ($n - 1))];
my ($slow) = sort { $took[$b] <=> $took[$a] } 0 .. $#took;
SKIP: {
    skip "valgrind serializes threads", 3 if $vg;
    cmp_ok($n, '>=', 10, "$n handshakes answered while the batch was decrypted");
    cmp_ok($p99, '<=', 0.05, sprintf("99 %% within 50 ms (p99 %.1f ms, %.1f ms "
           . "with waits for a CPU)", $p99 * 1000,
           (sort { $a <=> $b } @took)[int(0.99 * ($n - 1))] * 1000));
    cmp_ok($sorted[-1], '<=', 0.25 * $took_batch,
           sprintf("the slowest in %.1f ms, the batch in %.1f ms (the slowest "
                   . "with waits for a CPU: %.1f ms)", $sorted[-1] * 1000,
                   $took_batch * 1000, $took[$slow] * 1000));
}
my $st = status();
is($st->{items}{accepted}, $count, "all $count items decrypted and accepted");
is($st->{handshakes}, $n, "every handshake counted");
my @l = wait_lines($count, 30);
is(scalar @l, $count, "all written");
is($l[-1]{decryptedResource}{id}, "1732550001234", "decrypted");



=== TEST 14: graph_notify_thread_pool off decrypts on the event loop, the same way
--- http_config
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state secret-1;
    graph_notify_thread_pool off;
    graph_notify_validation_tokens off;
    graph_notify_decryption_key test-key-1
        $TEST_NGINX_TOP/t/data/enc-test.crt $TEST_NGINX_TOP/t/data/enc-test.key;
--- request eval
"POST /graph/notify\n" . GraphNotify::json_encode({ value => [
    main::rich_item('{"id":"inline"}'), main::rich_item('{"id":"inline2"}') ] })
--- error_code: 202
--- post_check
my @l = wait_lines(2);
is(join(",", map { $_->{decryptedResource}{id} } @l), "inline,inline2", "decrypted in order");



=== TEST 15: a thread pool that is not defined is refused by nginx -t
--- http_config
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_thread_pool nosuchpool;
--- config
    location = /graph/notify { graph_notify; }
--- must_die
--- error_log
unknown thread pool "nosuchpool"



=== TEST 16: escapes in strings decide what is structure: misread, this batch of 3 would count 4 or more items
--- config
    location = /graph/notify {
        graph_notify;
        graph_notify_max_batch 3;
    }
    location = /graph/status { graph_notify_status; }
--- request eval
# read right, "note" is "},{},{},{" between escaped quotes, "tail" one
# backslash and "k" "},{},{},{": one item.  A scan that ends a string at an
# escaped quote sees three more items after "note"; one that takes the quote
# after an escaped backslash for an escaped quote sees three more after "k".
my $item = GraphNotify::json_encode(GraphNotify::basic_item(record => "tricky"));
$item =~ s/^\{/{"note":"\\"},{},{},{\\"","tail":"\\\\","k":"},{},{},{",/;
"POST /graph/notify\n{\"value\":[$item,"
    . GraphNotify::json_encode(GraphNotify::basic_item(record => "plain1")) . ","
    . GraphNotify::json_encode(GraphNotify::basic_item(record => "plain2")) . "]}"
--- error_code: 202
--- post_check
my @l = wait_lines(3);
is(join(",", map { $_->{resourceData}{id} } @l), "tricky,plain1,plain2", "three items, in order");
is($l[0]{note}, '"},{},{},{"', "the escaped quotes are in the string");
is($l[0]{tail}, '\\', "an escaped backslash before the closing quote");
is($l[0]{k}, '},{},{},{', "and what follows it is a string again");
my @raw = output_lines();
ok(index($raw[0], q|"note":"\"},{},{},{\"","tail":"\\\\","k":"},{},{},{"|) >= 0, "copied as sent");
is(status()->{items}{received}, 3, "three items received");



=== TEST 17: a decrypted resource is kept only if jansson takes it for an object, whether the scanner or jansson checks it
--- request eval
# without "CallConversation" the envelope scanner checks the resource, and
# jansson where the scanner is stricter (a key twice); every other one is
# either written as it came or dropped as not_json
my @c = ('[1,2]', '{"a":}', qq|{"s":"\xff"}|, '{"a":1} x', '"text"',
         '{"n":1e309}', '{"i":99999999999999999999}',
         '{"id":"twice","value":[1],"value":2}',
         '{"id":"items","value":[{"a":1}]}', qq| \t{"id":"ws"}\n|);
my @items = map { main::rich_item($c[$_], subscription => "sub-$_") } 0 .. $#c;
"POST /graph/notify\n" . GraphNotify::json_encode({ value => \@items })
--- error_code: 202
--- error_log
graph_notify: dropped 7 of 10 item(s) (not_json=7); first: item 0, subscription sub-0: decrypted content is not JSON
--- post_check
my @l = wait_lines(3);
is(join(",", map { $_->{decryptedResource}{id} } @l), "twice,items,ws", "the three objects, in order");
my @raw = map { /,"decryptedResource":(.*)\}\z/s ? $1 : undef } output_lines();
is($raw[0], '{"id":"twice","value":[1],"value":2}', "a key twice, as it came");
is($raw[1], '{"id":"items","value":[{"a":1}]}', "an object with a value array, as it came");
is($raw[2], qq| \t{"id":"ws"} |, "whitespace kept, the line break a space");
my $st = status();
is($st->{items}{dropped}{not_json}, 7, "counted");
is($st->{items}{decryptFailures}, 7, "as decryption failures");
