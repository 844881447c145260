package GraphNotify;

# Shared helpers of the test suite.  They work the same under the real
# Test::Nginx and under t/compat, since both run add_response_body_check.
#
# A block may carry a "--- post_check" section: Perl code run once, after
# the block's last response, with the helpers below in scope.  Its Test::More
# assertions count as the block's tests.

use strict;
use warnings;

use Test::More;
use HTTP::Tiny;
use JSON::PP;
use Time::HiRes qw(sleep time);
use Exporter 'import';

our @EXPORT = qw(
    output_file output_lines wait_lines status status_text vector
    read_file rich_body sim_cmd valgrind_factor nginx_pid helper_pid
    wait_helper_pid reload_nginx json_decode json_encode http_post
    basic_item basic_body notify_url data_file log_count
    start_sim sim_get sim_post sim_record sim_faults sim_stats sim_reset
    sim_count record_lines wait_for rewrite_conf sim_token
    nginx_processes stop_nginx_now kill_nginx start_nginx_again journal_files
    post_items written_ids check_once alive status_is
);

my $json = JSON::PP->new->utf8->canonical->allow_nonref;

sub json_decode { $json->decode($_[0]) }
sub json_encode { $json->encode($_[0]) }

sub valgrind_factor { $ENV{TEST_NGINX_USE_VALGRIND} ? 6 : 1 }

sub servroot { $ENV{TEST_NGINX_SERVER_ROOT} || Test::Nginx::Socket::server_root() }

sub data_file { "$ENV{TEST_NGINX_TOP}/t/data/$_[0]" }

sub output_file { servroot() . "/logs/graph_notify.ndjson" }

sub read_file {
    my ($path) = @_;
    open my $fh, '<:raw', $path or return undef;
    local $/;
    my $s = <$fh>;
    close $fh;
    return $s;
}

# Whole lines only: a large line may be read while the helper is still
# writing it, and a reader of the NDJSON output waits for its newline.
sub output_lines {
    my $s = read_file(output_file());
    return () unless defined $s && length $s;
    $s =~ s/[^\n]*\z//;
    return split /\n/, $s;
}

# Waits until the output holds at least $n lines (the helper writes them
# after the 202), then until the server has settled with $queued items
# left in the queue (0 unless given), so that lines which should not be
# there are there too; returns the lines decoded.
sub wait_lines {
    my ($n, $timeout, $queued) = @_;
    $timeout = ($timeout || 10) * valgrind_factor();
    my $end = time + $timeout;
    my @lines;
    while (1) {
        @lines = output_lines();
        last if @lines >= $n || time > $end;
        sleep 0.05;
    }
    wait_settled($queued);
    @lines = output_lines();
    return map { json_decode($_) } @lines;
}

# True once nothing more reaches the output without new input: a helper
# runs, its journal is read back, and the queue holds just the $queued
# items a block keeps waiting on purpose.  Items leave the queue after the
# output's sync; with none held, no call record may be fetched or wait for
# a retry either.
sub settled {
    my ($st, $queued) = @_;
    $queued ||= 0;
    return $st->{helper}{pid} && !$st->{journal}{recovering}
        && $st->{queue}{items} == $queued
        && ($queued || (!$st->{callRecords}{active}
                        && !$st->{callRecords}{waiting}
                        && !$st->{callRecords}{backlog}));
}

# Waits until the server has settled (see settled()); a server that does
# not, or has no status page to tell, fails the block.
sub wait_settled {
    my ($queued, $timeout) = @_;
    my $res;
    my $ok = wait_for(sub {
        $res = http_get("/graph/status");
        return $res->{status} == 200
               && settled(json_decode($res->{content}), $queued);
    }, $timeout || 10);
    Test::More::fail("the server settled with " . ($queued || 0)
                     . " item(s) queued: $res->{status} $res->{content}")
        unless $ok;
    return $ok;
}

sub http_get {
    my ($path) = @_;
    my $res = HTTP::Tiny->new(timeout => 10 * valgrind_factor())
        ->get("http://127.0.0.1:" . Test::Nginx::Socket::server_port() . $path);
    return $res;
}

sub http_post {
    my ($path, $body, $headers) = @_;
    return HTTP::Tiny->new(timeout => 10 * valgrind_factor())->post(
        "http://127.0.0.1:" . Test::Nginx::Socket::server_port() . $path,
        { content => $body,
          headers => { 'Content-Type' => 'application/json',
                       %{ $headers || {} } } });
}

sub status {
    my $res = http_get("/graph/status");
    die "status page: $res->{status} $res->{content}\n"
        unless $res->{status} == 200;
    return json_decode($res->{content});
}

sub status_text {
    my ($query) = @_;
    return http_get("/graph/status" . ($query || ''))->{content};
}

sub nginx_pid {
    my $s = read_file(servroot() . "/logs/nginx.pid");
    chomp $s if defined $s;
    return $s;
}

sub helper_pid { status()->{helper}{pid} }

# After a (re)start, the helper's pid once it has written its heartbeat.
sub wait_helper_pid {
    my ($not) = @_;
    my $end = time + 10 * valgrind_factor();
    while (time < $end) {
        my $st = eval { status() };
        if ($st && $st->{helper}{pid}
            && (!$not || $st->{helper}{pid} != $not)
            && kill(0, $st->{helper}{pid}))
        {
            return $st->{helper}{pid};
        }
        sleep 0.1;
    }
    return 0;
}

# Edits the running configuration in place (before a reload).
sub rewrite_conf {
    my ($from, $to) = @_;
    my $f = servroot() . "/conf/nginx.conf";
    my $s = read_file($f);
    $s =~ s/\Q$from\E/$to/g or die "no $from in nginx.conf";
    open my $fh, '>', $f or die $!;
    print $fh $s;
    close $fh;
}

# The master's pid for a signal.  The master writes its pid file after it
# starts, so right after a (re)start the file may be missing or empty for a
# moment: wait for a number rather than signal nothing.
sub running_master_pid {
    my $pid = wait_for(sub {
        my $p = nginx_pid();
        return defined $p && $p =~ /^\d+$/ ? $p : undef;
    }, 10);
    die "no pid in logs/nginx.pid" unless $pid;
    return $pid;
}

sub reload_nginx {
    my $old = helper_pid();
    kill 'HUP', running_master_pid();
    return wait_helper_pid($old);
}

# The running NGINX: its master first, then the master's children.
sub nginx_processes {
    my ($master) = @_;
    $master ||= nginx_pid() or return ();
    my @pids = ($master);
    for my $stat (glob "/proc/[0-9]*/stat") {
        my $s = read_file($stat);
        next unless defined $s;
        my ($pid, $state, $ppid) = $s =~ /^(\d+) \(.*\) (\S) (\d+)/s
            or next;
        push @pids, $pid if $ppid == $master && $state ne 'Z';
    }
    return @pids;
}

sub alive {
    my ($pid) = @_;
    return 0 unless kill 0, $pid;
    my $s = read_file("/proc/$pid/stat") // '';
    return $s !~ /^\d+ \(.*\) Z/s;
}

# Stops NGINX with a signal to its master ('QUIT' graceful, 'TERM' fast)
# and waits until every one of its processes is gone.
sub stop_nginx_now {
    my ($sig) = @_;
    my @pids = nginx_processes();
    return 0 unless @pids;
    kill $sig, $pids[0];
    return wait_for(sub { !grep { alive($_) } @pids }, 30);
}

# SIGKILL to every NGINX process at once: nothing runs an exit handler.
sub kill_nginx {
    my @pids = nginx_processes();
    return 0 unless @pids;
    kill 'KILL', @pids;
    my $ok = wait_for(sub { !grep { alive($_) } @pids }, 30);
    unlink servroot() . "/logs/nginx.pid";
    return $ok;
}

# Starts NGINX again on the same server root (under valgrind too when the
# suite runs so, as a daemon); returns the new helper's pid.
sub start_nginx_again {
    my $conf = servroot() . "/conf/nginx.conf";
    my @cmd = ($ENV{TEST_NGINX_BINARY}, '-p', servroot() . '/', '-c', $conf);
    if ($ENV{TEST_NGINX_USE_VALGRIND}) {
        my $s = read_file($conf);
        rewrite_conf("daemon off;", "daemon on;") if $s =~ /daemon off;/;
        @cmd = @{ Test::Nginx::Socket::nginx_cmd(1) };
    }
    system(@cmd) == 0 or die "starting nginx: @cmd: $?\n";
    return wait_helper_pid();
}

# The journal files in the helper's directory.
sub journal_files {
    my ($dir) = @_;
    $dir ||= servroot() . "/graph_notify_temp";
    return grep { m{/journal\.[0-9a-f]{16}\.\d+\.\d+$} } glob "$dir/journal.*";
}

# Posts $batches batches of $size items whose record ids start with $tag;
# returns the ids answered 202.
sub post_items {
    my ($batches, $size, $tag) = @_;
    my @ok;
    for my $b (1 .. $batches) {
        my @ids = map { sprintf "%s-%04d-%04d", $tag, $b, $_ } 1 .. $size;
        my $res = http_post("/graph/notify",
            basic_body(map { basic_item(record => $_) } @ids));
        push @ok, @ids if $res->{status} == 202;
    }
    return @ok;
}

# How often each record id is in the output.
sub written_ids {
    my %n;
    $n{ $_->{resourceData}{id} }++ for map { json_decode($_) } output_lines();
    return \%n;
}

# Every id of @$acked written exactly once, and nothing else.
sub check_once {
    my ($acked, $what) = @_;
    my $end = time + 20 * valgrind_factor();
    my $w;
    while (1) {
        $w = written_ids();
        last if (grep { $w->{$_} } @$acked) == @$acked || time > $end;
        sleep 0.1;
    }
    wait_settled();    # a second write of anything would come by now
    $w = written_ids();
    is(scalar(grep { ($w->{$_} // 0) == 1 } @$acked), scalar @$acked,
       "$what: every acked item written once");
    is(scalar(grep { $w->{$_} > 1 } keys %$w), 0, "$what: none twice");
    is(scalar(keys %$w), scalar @$acked, "$what: nothing else");
}

sub vector {
    my ($name) = @_;
    my $s = read_file(data_file($name));
    die "missing test vector $name\n" unless defined $s;
    return $s;
}

sub sim_cmd {
    my @args = @_;
    my $py = $ENV{PYTHON} || '/usr/bin/python3';
    return "$py $ENV{TEST_NGINX_TOP}/scripts/graph-sim @args";
}

# A rich notification body, encrypted for a test certificate by the
# simulator, optionally with a fault ("bad-hmac", "key-length", ...).
# With "signed", its validation token is signed by the running simulator
# (token_version 1 or 2, token_fault "audience", ...); "tokens" replaces
# the validationTokens array.
sub rich_body {
    my (%o) = @_;
    my $content = $o{content} || data_file('chat-message.json');
    my @args = ('rich', '--print',
                '--cert', $o{cert} || data_file('enc-test.crt'),
                '--cert-id', $o{cert_id} || 'test-key-1',
                '--content', $content,
                '--client-state', $o{client_state} || 'secret-1',
                '--tenant', $o{tenant} || '11111111-2222-3333-4444-555555555555',
                '--subscription', $o{subscription} || 'sub-rich-1');
    push @args, '--fault', $o{fault} if $o{fault};
    if ($o{signed}) {
        push @args, '--sim', "http://127.0.0.1:$ENV{TEST_NGINX_SIM_PORT}",
                    '--app-id', $o{app_id} || $GraphNotify::APP_ID,
                    '--token-version', $o{token_version} || 2;
        push @args, '--token-fault', $o{token_fault} if $o{token_fault};
    }
    my $cmd = sim_cmd(@args);
    my $out = `$cmd`;
    die "graph-sim rich failed: $cmd\n" if $? != 0;
    if ($o{tokens}) {
        my $b = json_decode($out);
        $b->{validationTokens} = $o{tokens};
        delete $b->{validationTokens} unless @{ $o{tokens} };
        $out = json_encode($b);
    }
    return $out;
}

# A validation token signed by the running simulator.
sub sim_token {
    my (%o) = @_;
    my %req = (tenant => $o{tenant} || '11111111-2222-3333-4444-555555555555',
               app_id => $o{app_id} || $GraphNotify::APP_ID,
               version => $o{version} || 2);
    $req{fault} = $o{fault} if $o{fault};
    return sim_post('/_sim/validation-token', \%req)->{token};
}

sub basic_item {
    my (%o) = @_;
    my $id = $o{record} || 'a3e1d8c4-0000-4000-8000-000000000001';
    my $item = {
        subscriptionId => $o{subscription} || 'sub-basic-1',
        subscriptionExpirationDateTime => '2026-11-26T10:00:00.0000000+00:00',
        changeType => $o{change} || 'created',
        resource => "communications/callRecords/$id",
        resourceData => {
            '@odata.type' => '#Microsoft.Graph.callRecord',
            '@odata.id' => "communications/callRecords/$id",
            id => $id,
        },
        clientState => exists $o{client_state} ? $o{client_state}
                                               : 'secret-1',
        tenantId => $o{tenant} || '11111111-2222-3333-4444-555555555555',
    };
    delete $item->{clientState} unless defined $item->{clientState};
    return $item;
}

sub basic_body {
    my @items = @_;
    @items = (basic_item()) unless @items;
    return json_encode({ value => \@items });
}

sub notify_url { "/graph/notify" }

# The local Graph simulator, one per test file, started before run_tests;
# its port is $TEST_NGINX_SIM_PORT in the configuration.

our $APP_ID = '5b4f6a52-1111-4222-8333-444455556666';
our $SECRET = 's3cr+t/=~ secret';
my $sim_pid;

# A port of the kernel's choice, held until the file ends by a socket bound
# with SO_REUSEADDR and not listening: no other process gets it meanwhile,
# yet the simulator (Python's servers set SO_REUSEADDR) can listen on it.
my @held_ports;

sub free_port {
    require Socket;
    socket(my $s, Socket::PF_INET(), Socket::SOCK_STREAM(), 0)
        or die "no free port: socket(): $!";
    setsockopt($s, Socket::SOL_SOCKET(), Socket::SO_REUSEADDR(), 1)
        or die "no free port: setsockopt(): $!";
    bind($s, Socket::pack_sockaddr_in(0, Socket::INADDR_ANY()))
        or die "no free port: bind(): $!";
    my ($port) = Socket::unpack_sockaddr_in(getsockname($s));
    push @held_ports, $s;
    return $port;
}

sub start_sim {
    my (@args) = @_;
    my $port = free_port();
    my $py = $ENV{PYTHON} || '/usr/bin/python3';
    my $log = $ENV{TEST_NGINX_SIM_LOG} || '/dev/null';
    $sim_pid = fork // die "fork: $!";
    if ($sim_pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>>', $log;
        exec $py, "$ENV{TEST_NGINX_TOP}/scripts/graph-sim", 'serve',
             '--host', '127.0.0.1', '--port', $port, '--secret', $SECRET,
             '--client-id', $APP_ID, @args;
        die "exec: $!";
    }
    $ENV{TEST_NGINX_SIM_PORT} = $port;
    $ENV{TEST_NGINX_APP_ID} = $APP_ID;
    my $end = time + 20;
    while (time < $end) {
        my $r = HTTP::Tiny->new(timeout => 1)
            ->get("http://127.0.0.1:$port/_sim/health");
        return $port if $r->{status} == 200;
        sleep 0.1;
    }
    die "the simulator did not start\n";
}

END { kill 'TERM', $sim_pid if $sim_pid; }

sub sim_url { "http://127.0.0.1:$ENV{TEST_NGINX_SIM_PORT}$_[0]" }

sub sim_get {
    my $r = HTTP::Tiny->new(timeout => 10)->get(sim_url($_[0]));
    die "sim GET $_[0]: $r->{status}\n" unless $r->{success};
    return json_decode($r->{content});
}

sub sim_post {
    my ($path, $body) = @_;
    my $r = HTTP::Tiny->new(timeout => 10)->post(sim_url($path), {
        content => json_encode($body || {}),
        headers => { 'Content-Type' => 'application/json' } });
    die "sim POST $path: $r->{status} $r->{content}\n" unless $r->{success};
    return $r->{content} =~ /^\s*[\[{]/ ? json_decode($r->{content}) : undef;
}

sub sim_reset { sim_post('/_sim/reset') }
sub sim_record { sim_post('/_sim/records', {@_}) }
sub sim_faults { sim_post('/_sim/faults', {@_}) }
sub sim_stats { sim_get('/_sim/stats') }

# Graph requests of a kind ("record_get", "sessions_page", "token") so far,
# for one record if given.
sub sim_count {
    my ($kind, $record) = @_;
    my $st = sim_stats();
    return $record ? ($st->{by_record}{$record}{$kind} || 0)
                   : ($st->{by_kind}{$kind} || 0);
}

# Output lines of kind "callRecord", decoded, once there are $n and the
# server has settled with $queued items held (as in wait_lines()).
sub record_lines {
    my ($n, $timeout, $queued) = @_;
    my $end = time + ($timeout || 20) * valgrind_factor();
    my @r;
    while (1) {
        @r = grep { $_->{kind} eq 'callRecord' }
             map { json_decode($_) } output_lines();
        last if @r >= $n || time > $end;
        sleep 0.1;
    }
    wait_settled($queued);
    return grep { $_->{kind} eq 'callRecord' }
           map { json_decode($_) } output_lines();
}

# Waits until the code returns true; returns its last value.
sub wait_for {
    my ($code, $timeout) = @_;
    my $end = time + ($timeout || 20) * valgrind_factor();
    my $v;
    until (($v = $code->()) || time > $end) { sleep 0.1 }
    return $v;
}

# Asserts that a value of the status page ($get is given the page) becomes
# $want.  The written counters and the queue move once the output's sync
# has completed, a moment after the lines can be read.
sub status_is {
    my ($get, $want, $name, $timeout) = @_;
    my $got;
    wait_for(sub {
        $got = eval { $get->(status()) };
        defined $got && $got eq $want;
    }, $timeout || 10);
    return is($got, $want, $name);
}

# A Unix time as Graph writes it (UTC, ISO 8601).
sub iso_time {
    my @t = gmtime($_[0]);
    return sprintf "%04d-%02d-%02dT%02d:%02d:%02dZ",
                   $t[5] + 1900, $t[4] + 1, @t[3, 2, 1, 0];
}

# Lines of this block's error.log that match $re.
sub log_count {
    my ($re) = @_;
    my $s = read_file(servroot() . "/logs/error.log");
    return 0 unless defined $s;
    return scalar grep { /$re/ } split /\n/, $s;
}

# Blocks without their own get this configuration.

our $HTTP_CONFIG = <<'END';
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state secret-1;
END

# Rich notifications without the Graph client: their validation tokens are
# not checked (t/013-validation-tokens.t checks them).
our $RICH_HTTP_CONFIG = <<'END';
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state secret-1;
    graph_notify_validation_tokens off;
    graph_notify_decryption_key test-key-1
        $TEST_NGINX_TOP/t/data/enc-test.crt $TEST_NGINX_TOP/t/data/enc-test.key;
END

# With the Graph client signed in to the simulator (start_sim first).
our $GRAPH_HTTP_CONFIG = <<'END';
    graph_notify_zone graph_notify:4m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state secret-1;
    graph_notify_app_id $TEST_NGINX_APP_ID;
    graph_notify_client_secret file:$TEST_NGINX_TOP/t/data/client-secret.txt;
    graph_notify_graph_url http://127.0.0.1:$TEST_NGINX_SIM_PORT;
    graph_notify_login_url http://127.0.0.1:$TEST_NGINX_SIM_PORT;
END

# The same, with another secret, a certificate (its extra parameters given)
# instead of the secret, another output, or extra directives.
sub graph_config {
    my (%o) = @_;
    my $c = $GRAPH_HTTP_CONFIG;
    my $secret = qr/graph_notify_client_secret [^\n]*;/;
    $c =~ s/$secret/graph_notify_client_secret $o{secret};/ if $o{secret};
    $c =~ s{$secret}{graph_notify_client_certificate \$TEST_NGINX_TOP/t/data/app-test.crt \$TEST_NGINX_TOP/t/data/app-test.key$o{certificate};}
        if defined $o{certificate};
    $c =~ s{graph_notify_output [^\n]*;}{graph_notify_output $o{output};}
        if $o{output};
    $c .= "    $o{extra}\n" if $o{extra};
    return $c;
}

our $CONFIG = <<'END';
    location = /graph/notify { graph_notify; }
    location = /graph/status { graph_notify_status; }
END

# t/compat fails a block with a section it does not know: post_check is ours.
Test::Nginx::Socket::register_sections('post_check')
    if defined &Test::Nginx::Socket::register_sections;

Test::Nginx::Socket::add_block_preprocessor(sub {
    my ($block) = @_;

    # without graph_notify_path and graph_notify_output, NGINX writes into
    # the compiled-in /var/lib/nginx and /var/log/nginx (the output is
    # created while the configuration is read, so even by "nginx -t")
    my $http = $block->http_config;
    Test::More::fail($block->name . " - graph_notify_path and "
                     . "graph_notify_output must point into the server root")
        if defined $http
           && ($http . ($block->config // $CONFIG)) =~ /\bgraph_notify\s*;/
           && ($http !~ /\bgraph_notify_path\b/
               || $http !~ /\bgraph_notify_output\b/);

    # no response, so no post_check: it would pass without running
    Test::More::fail($block->name . " - post_check is never run with must_die")
        if defined $block->post_check && defined $block->must_die;

    $block->set_value('http_config', $HTTP_CONFIG)
        unless defined $block->http_config;
    $block->set_value('config', $CONFIG) unless defined $block->config;
});

Test::Nginx::Socket::add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;

    return if $dry_run;

    my $code = $block->post_check;
    return unless defined $code;

    my $req = $block->request;
    my $n = ref($req) eq 'ARRAY' ? scalar(@$req) : 1;
    return unless $req_idx == $n - 1;

    my $before = Test::More->builder->current_test;
    {
        package main;
        no strict;
        # Time::HiRes's sleep: CORE::sleep(0.25) is sleep(0), a busy loop
        # (time stays CORE's: blocks write it as whole seconds)
        eval "use GraphNotify; use Time::HiRes qw(sleep); $code; 1"
            or die "post_check: $@";
    }
    # a post_check that asserted nothing would pass without checking
    Test::More::fail($block->name . " - post_check made no assertion")
        if Test::More->builder->current_test == $before;
});

1;
