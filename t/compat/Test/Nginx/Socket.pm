package Test::Nginx::Socket;

# A compact runner for Test::Nginx::Socket-style .t files, used when the
# openresty Test::Nginx distribution is not installed.  Test::Base parses
# the blocks; for every block this module writes servroot/conf/nginx.conf,
# restarts nginx, sends the requests over plain sockets and checks the
# responses and the error log with the same assertions as the original.

use Test::Base -base;

use strict;
use warnings;

use Cwd ();
use File::Glob qw(bsd_glob);
use File::Path qw(make_path remove_tree);
use File::Spec ();
use HTTP::Response ();
use IO::Select ();
use IO::Socket::INET ();
use Socket ();
use List::Util qw(shuffle);
use POSIX qw(EAGAIN EINTR EWOULDBLOCK SIGKILL SIGQUIT SIGTERM WNOHANG);
use Scalar::Util qw(looks_like_number);
use Test::LongString ();
use Time::HiRes qw(sleep time);

our $VERSION = '0.29';

our @EXPORT = qw(
    run_tests repeat_each no_shuffle master_on master_off master_process_enabled
    workers worker_connections log_level no_long_string no_root_location
    env_to_nginx check_accum_error_log add_block_preprocessor
    add_response_body_check add_cleanup_handler server_port
    server_port_for_client server_addr server_name server_root html_dir
    timeout bail_out is_str
);

# settings: the environment variables and defaults of Test::Nginx::Util
our $NginxBinary       = $ENV{TEST_NGINX_BINARY} || 'nginx';
# TEST_NGINX_RANDOMIZE, as in Test::Nginx: a port and a server root of this
# test file's own, so that several files can run side by side (prove -j).
our $Randomize         = $ENV{TEST_NGINX_RANDOMIZE};
our $ServerPort        = $Randomize ? free_port()
                         : $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
                           || 1984;
our $LogLevel          = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcess     = ($ENV{TEST_NGINX_MASTER_PROCESS} // '') =~ /^(?:on|1)$/i
                         ? 'on' : 'off';
our $NoShuffle         = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $Timeout           = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $CheckAccumErrLog  = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $UseValgrind       = $ENV{TEST_NGINX_USE_VALGRIND};
our $NoClean           = $ENV{TEST_NGINX_NO_CLEAN};
our $LoadModules       = $ENV{TEST_NGINX_LOAD_MODULES} || '';
our $Sleep             = $ENV{TEST_NGINX_SLEEP} || 0.015;
our ($ServerAddr, $ServerName) = ('127.0.0.1', 'localhost');
our ($Workers, $WorkerConnections, $RepeatEach) = (1, 64, 1);
our ($NoRootLocation, $NoLongString) = (0, 0);

my $Scale = $UseValgrind ? 4 : 1;    # valgrind slows everything down

our $ServRoot   = File::Spec->rel2abs($Randomize ? "t/servroot_$$"
                                      : $ENV{TEST_NGINX_SERVROOT}
                                        || 't/servroot');
our $LogDir     = "$ServRoot/logs";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $PidFile    = "$LogDir/nginx.pid";
my $StderrFile  = "$LogDir/nginx.stderr";    # what nginx prints while starting

$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
$ENV{TEST_NGINX_HTML_DIR}    = $HtmlDir;

our (@BlockPreprocessors, @ResponseBodyChecks, @CleanupHandlers, @EnvToNginx);

# The sections this runner implements; a block with any other fails rather
# than pass without checking what it asks for.
our %KnownSections = map { $_ => 1 } qw(
    ONLY LAST SKIP config http_config main_config post_main_config
    server_name user_files must_die init log_level request raw_request
    raw_request_middle_delay more_headers timeout wait ignore_response abort
    error_code error_code_like response_headers response_headers_like
    response_body response_body_like response_body_unlike error_log
    no_error_log grep_error_log grep_error_log_out shutdown_error_log
    no_shutdown_error_log
);

# Sections that make the whole block one skipped test, and the stap ones,
# which count one skipped test as without TEST_NGINX_USE_STAP.
my @SkippedSections = qw(pipelined_requests http2 tcp_listen udp_listen);
my %StapSections = map { $_ => 1 } qw(stap stap_out stap_out_like
                                      stap_out_unlike);

my $ChildPid;            # nginx running in the foreground under valgrind
my $ErrLogPos = 0;       # part of error.log already given to the checks
my $StderrUnread = 0;    # start-up stderr not yet given to the checks
my ($PrevBlock, $Started, $NginxV);

# ---- functions for the .t files ----

sub getset { my $ref = shift; $$ref = shift if @_; return $$ref }

# A port of the kernel's choice, held for as long as this test file runs.
# NGINX leaves it between blocks: meanwhile an outgoing connection of any
# process could take it as its local port (it is in the ephemeral range),
# and its TIME_WAIT would keep NGINX from binding it for a minute.  A
# socket bound with SO_REUSEADDR but not listening keeps the port out of
# connect() and bind(0), and lets NGINX (SO_REUSEADDR too) listen on it.
our @HeldPorts;    # not "my": free_port() runs before this line does

sub free_port {
    socket(my $s, Socket::PF_INET(), Socket::SOCK_STREAM(), 0)
        or die "no free port: socket(): $!";
    setsockopt($s, Socket::SOL_SOCKET(), Socket::SO_REUSEADDR(), 1)
        or die "no free port: setsockopt(): $!";
    bind($s, Socket::pack_sockaddr_in(0, Socket::INADDR_ANY()))
        or die "no free port: bind(): $!";
    my ($port) = Socket::unpack_sockaddr_in(getsockname($s));
    push @HeldPorts, $s;
    return $port;
}

sub repeat_each            { getset(\$RepeatEach, @_) }
sub workers                { getset(\$Workers, @_) }
sub worker_connections     { getset(\$WorkerConnections, @_) }
sub log_level              { getset(\$LogLevel, @_) }
sub timeout                { getset(\$Timeout, @_) }
sub server_port            { getset(\$ServerPort, @_) }
sub server_port_for_client { getset(\$ServerPort, @_) }
sub server_addr            { getset(\$ServerAddr, @_) }
sub server_name            { getset(\$ServerName, @_) }
sub no_shuffle ()            { $NoShuffle = 1 }
sub no_long_string ()        { $NoLongString = 1 }
sub no_root_location ()      { $NoRootLocation = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub master_on ()             { $MasterProcess = 'on' }
sub master_off ()            { $MasterProcess = 'off' }
sub master_process_enabled   { $MasterProcess = $_[0] ? 'on' : 'off' if @_; $MasterProcess }
sub server_root ()           { $ServRoot }
sub html_dir ()              { $HtmlDir }
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }
sub add_cleanup_handler ($)  { unshift @CleanupHandlers, shift }

# Sections that the .t files' own helpers implement (a block preprocessor or
# a response body check reads them), so that a block using them is run.
sub register_sections { $KnownSections{$_} = 1 for @_ }

sub env_to_nginx {
    for my $v (@_) {
        croak("env_to_nginx: bad argument value: $v") if $v !~ /^[A-Za-z_]/;
        push @EnvToNginx, $v;
    }
}

sub is_str {
    my ($got, $want, $desc) = @_;
    return Test::More::like($got, $want, $desc) if ref $want;
    return is($got, $want, $desc) if $NoLongString;
    return Test::LongString::is_string($got, $want, $desc);
}

sub bail_out {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

sub cleanup {
    $_->() for @CleanupHandlers;
    stop_nginx('cleanup') if defined $ChildPid;
}

# ---- main loop ----

sub run_tests () {
    $Started = 1;
    $NginxV = `$NginxBinary -V 2>&1`;
    bail_out("Failed to run \"$NginxBinary -V\": ", $NginxV // '') if $? != 0;
    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort
        if $Randomize || !defined $ENV{TEST_NGINX_SERVER_PORT};

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value(name => "$0 " . $block->name);
        run_block($block);
        $PrevBlock = $block;
    }
    cleanup();
}

sub run_block {
    my $block = shift;
    my $name = $block->name;
    return if defined $block->SKIP;
    for my $sec (@SkippedSections) {
        next unless defined $block->{$sec};
        SKIP: { skip("$name - --- $sec is not supported by this runner", 1) }
        return;
    }
    my @unknown = grep { !$KnownSections{$_} && !$StapSections{$_} }
                  @{ $block->{_section_order}[0] || [] };
    if (@unknown) {
        Test::More::fail("$name - this runner does not implement the section(s) "
                         . join(', ', map { "--- $_" } @unknown));
        return;
    }

    my $ports = {};    # $TEST_NGINX_RAND_PORT_N of this block
    local $LogLevel = defined $block->log_level ? trim(scalar $block->log_level)
                                                : $LogLevel;
    my $must_die = $block->must_die;
    my $valgrind = defined $must_die ? undef : $UseValgrind;

    stop_nginx($name);
    check_shutdown_error_log();
    setup_server_root();
    write_user_files($block, $ports);
    write_config_file($block, $ports, $valgrind);
    return run_must_die($block, trim($must_die)) if defined $must_die;

    start_nginx($name, $valgrind);
    if (defined $block->init) {
        eval $block->init;
        bail_out("$name - init failed: $@") if $@;
    }
    $ErrLogPos = 0;
    for my $rep (0 .. $RepeatEach - 1) {
        write_user_files($block, $ports) if $rep > 0;
        run_requests($block, $rep, $ports);
    }
    stop_nginx($name) if $valgrind;    # valgrind writes its report now
}

sub run_must_die {
    my ($block, $must_die) = @_;
    my $name = $block->name;
    $ErrLogPos = 0;
    for my $rep (0 .. $RepeatEach - 1) {
        my $status = spawn_nginx(nginx_cmd(0), $StderrFile, 0);
        $StderrUnread = 1;
        if ($status == -1 || ($status & 127)) {
            Test::More::fail("$name - nginx could not run or crashed ($status)");
        } elsif ($must_die ne '' && looks_like_number($must_die)) {
            Test::More::is($must_die, $status >> 8, "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }
        check_error_log($block, $rep);
        next if $status != 0;
        warn "WARNING: $name - nginx must die but it does not; killing it\n";
        for (1 .. 30) { last if -s $PidFile; sleep $Sleep }
        stop_nginx($name);
    }
}

# ---- server root and nginx.conf ----

sub setup_server_root {
    if (-d $ServRoot) {
        # remove only what is ours, never unknown data under the server root
        remove_tree($ConfDir, $HtmlDir, $LogDir, bsd_glob("$ServRoot/*_temp"),
                    bsd_glob("$ServRoot/*_cache"));
        rmdir $ServRoot or bail_out("Can't remove $ServRoot (not empty?): $!");
    }
    for my $dir ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        make_path($dir);
        -d $dir or bail_out("Failed to do mkdir $dir");
    }
    write_file("$HtmlDir/index.html", '<html><head><title>It works!</title>'
               . '</head><body>It works!</body></html>');
}

sub write_file {
    my ($path, $data) = @_;
    open my $out, '>', $path or bail_out("Can't open $path for writing: $!");
    binmode $out;
    print $out $data;
    close $out;
}

sub write_user_files {
    my ($block, $ports) = @_;
    my ($name, $files) = ($block->name, scalar $block->user_files);
    return unless $files;
    if (!ref $files) {    # ">>> name [mtime]" lines, each followed by the data
        my @list;
        for my $line (split /^/m, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+))?/) { push @list, [$1, '', $2] }
            elsif (@list)                          { $list[-1][1] .= $line }
        }
        $files = \@list;
    }
    bail_out("$name - --- user_files must be a string or an ARRAY") if ref $files ne 'ARRAY';
    for my $file (@$files) {
        my ($fname, $body, $date) = @$file;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        make_path($1) if $path =~ m{(.*)/} && !-d $1;
        write_file($path, expand_env($body // '', $name, $ports));
        next unless $date;
        local $ENV{TZ} = 'GMT';
        system('touch', '-t', $date, $path) == 0
            or bail_out("$name - failed to set the mtime of $path");
    }
}

sub write_config_file {
    my ($block, $ports, $valgrind) = @_;
    my %c = map { $_ => expand_env(scalar $block->$_, $block->name, $ports) // '' }
            qw(config http_config main_config post_main_config);
    my $server_name = $block->server_name // $ServerName;
    my $daemon = $valgrind ? 'off' : 'on';
    my $modules = join '', map { "load_module $_;\n" } split ' ', $LoadModules;
    my $env = join '', map { /\s/ ? "env '$_';\n" : "env $_;\n" } @EnvToNginx;
    my $temp = '';    # keep nginx's temporary files inside the server root
    for my $t (qw(client_body proxy fastcgi uwsgi scgi)) {
        next if $NginxV =~ /--without-http_${t}_module/
                || $c{http_config} =~ /\b${t}_temp_path\b/;
        $temp .= "    ${t}_temp_path $ServRoot/${t}_temp;\n";
    }
    my $root = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_
    my $user = defined $ENV{TEST_NGINX_WORKER_USER} ? "user $ENV{TEST_NGINX_WORKER_USER};\n"
             : $> == 0 ? "user root;\n" : '';

    write_file($ConfFile, <<"_EOC_");
${modules}worker_processes  $Workers;
daemon $daemon;
master_process $MasterProcess;
error_log $ErrLogFile $LogLevel;
pid       $PidFile;
$env
$c{main_config}

http {
    access_log $AccLogFile;

    default_type text/plain;
    keepalive_timeout  68;

$temp
$c{http_config}

    server {
        listen          $ServerPort;
        server_name     '$server_name';

        client_max_body_size 30M;

        # Begin test case config...
$c{config}
        # End test case config.

$root    }
}

$c{post_main_config}

events {
    accept_mutex off;

    worker_connections  $WorkerConnections;
}
$user
_EOC_
}

# $TEST_NGINX_FOO -> $ENV{TEST_NGINX_FOO}; $TEST_NGINX_RAND_PORT_N -> a free port
sub expand_env {
    my ($text, $name, $ports) = @_;
    return $text if !defined $text || ref $text || index($text, '$TEST_NGINX_') < 0;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            $ports->{$var} = gen_rand_port($ports) unless defined $ports->{$var};
            $ports->{$var} // bail_out("$name - Cannot find a free port for $var");
        } else {
            $ENV{$var} // bail_out("$name - No environment $var defined.\n");
        }
    }ge;
    return $text;
}

sub gen_rand_port {
    my $ports = shift;
    my %used = map { $_ => 1 } $ServerPort, grep { defined } values %$ports;
    for (1 .. 1000) {
        my $port = 1985 + int rand(65535 - 1985);
        next if $used{$port};
        my $sock = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => $port,
                                         Proto => 'tcp', ReuseAddr => 1) or next;
        close $sock;
        return $port;
    }
    return undef;
}

# ---- starting and stopping nginx ----

sub nginx_cmd {
    my $valgrind = shift;
    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);
    return \@cmd unless $valgrind;
    return ['valgrind', '-q', split(' ', $valgrind), @cmd] if $valgrind !~ /^\d+$/;
    my $supp = Cwd::cwd() . '/valgrind.suppress';
    # valgrind reports go to their own files, relayed to stderr when nginx
    # stops, so that nginx's own start-up stderr stays checkable
    return ['valgrind', '-q', '--tool=memcheck', '--leak-check=full',
            '--show-possibly-lost=no', '--gen-suppressions=all',
            "--log-file=$LogDir/valgrind.%p.log",
            (-f $supp ? "--suppressions=$supp" : ()), '--num-callers=30', @cmd];
}

# Runs $cmd with stdout to /dev/null and stderr to $stderr (or inherited);
# returns the wait status, or the pid when run in the background.
sub spawn_nginx {
    my ($cmd, $stderr, $background) = @_;
    my $pid = fork // bail_out("fork() failed: $!");
    if ($pid == 0) {
        setpgrp(0, 0) if $background;
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', $stderr if defined $stderr;
        { no warnings 'exec'; exec { $cmd->[0] } @$cmd; }
        print STDERR "exec $cmd->[0] failed: $!\n";
        POSIX::_exit(127);
    }
    return $pid if $background;
    waitpid($pid, 0);
    return $?;
}

sub start_nginx {
    my ($name, $valgrind) = @_;
    my $cmd = nginx_cmd($valgrind);
    if ($valgrind) {    # not a daemon; requests wait for the port to answer
        warn "$name\n";
        $ChildPid = spawn_nginx($cmd, $StderrFile, 1);
        $StderrUnread = 1;
        return sleep $Sleep;
    }
    for (my $waited = 0; ; $waited += 0.2) {
        my $status = spawn_nginx($cmd, $StderrFile, 0);
        $StderrUnread = 1;
        last if $status == 0;
        my $err = slurp($StderrFile) // '';
        bail_out("$name - Cannot start nginx using command \"@$cmd\" "
                 . "(status code $status): $err")
            if $err !~ /Address already in use/ || $waited > 10;
        sleep 0.2;
    }
    sleep $Sleep;
}

sub is_running {
    my $pid = shift;
    waitpid($pid, WNOHANG) if defined $ChildPid && $pid == $ChildPid;
    return 0 unless kill 0, $pid;
    # an exited daemon can stay a zombie when nobody reaps it
    return (slurp("/proc/$pid/stat") // '') !~ /^\d+ \(.*\) Z/s;
}

sub wait_exit {
    my ($pid, $secs) = @_;
    my $deadline = time + $secs;
    sleep 0.02 while is_running($pid) && time < $deadline;
    return !is_running($pid);
}

sub stop_nginx {
    my $name = shift;
    my $pid = $ChildPid // ((slurp($PidFile) // '') =~ /^\s*(\d+)/ ? $1 : undef);
    if ($pid && is_running($pid)) {
        kill SIGQUIT, $pid;
        if (!wait_exit($pid, $ChildPid ? 20 : $Timeout * $Scale)) {
            warn "$name - timeout when waiting for the process $pid to exit\n";
            kill SIGTERM, $pid;
            wait_exit($pid, 1)
                or kill(SIGKILL, getpgrp($pid) == $pid ? -$pid : $pid) && wait_exit($pid, 1);
        }
    }
    waitpid($ChildPid, 0) if defined $ChildPid;
    undef $ChildPid;
    unlink $PidFile;
    for my $report (glob "$LogDir/valgrind.*.log") {
        my $text = slurp($report) // '';
        print STDERR $text;
        unlink $report;
    }
}

sub slurp {
    open my $in, '<', shift or return undef;
    local $/;
    return scalar <$in>;
}

END {
    if ($Started) {
        local $?;
        cleanup();
        stop_nginx('END') if !$NoClean || $UseValgrind;
        check_shutdown_error_log();
    }
}

# ---- requests ----

# Turns "METHOD [URI [VERSION]]\nbody" (maybe split in packets) into the
# packets of a complete request, adding Host, Connection and Content-Length.
sub build_request {
    my ($name, $more, $packets) = @_;
    my ($hdrs, $chunked) = ('', 0);
    for my $line (grep { !/^\s*#/ } split /\n+/, $more) {
        my ($key, $val) = split /:\s*/, $line, 2;
        $val //= '';
        $chunked = 1 if lc $key eq 'transfer-encoding' && $val eq 'chunked';
        $hdrs .= "$key: $val\r\n";
    }
    my @pk = map { ref $_ ? {%$_} : { value => $_ } } @$packets;
    my $orig = join '', map { $_->{value} // '' } @pk;
    $orig =~ /\A([^\n]*)(\n?)/;
    my ($first, $head_len) = ($1, length($1) + length($2));
    $first =~ /^\s*(\S+)(?:\s+(\S+))?(?:\s+(\S+))?\s*$/
        or bail_out("$name - Request line is not valid. Should be "
                    . "'meth [url [version]]' but got \"$first\".");
    my $line = "$1 " . ($2 // '/') . ' ' . ($3 // 'HTTP/1.1') . "\r\n";

    my $content = substr($orig, $head_len);
    my $skipped = 0;
    if (!$chunked && length $content && $hdrs !~ /(?:^|\n)Content-Length:/i) {
        # like Test::Nginx: whitespace around the body is not sent
        $skipped = $content =~ s/\A(\s+)// ? length $1 : 0;
        my $n = length $content;
        $n-- while $n > 0 && substr($content, $n - 1, 1) =~ /\s/;
        substr($content, $n) = '';
        $hdrs .= 'Content-Length: ' . length($content) . "\r\n";
    }
    $hdrs = "Connection: close\r\n$hdrs" if $hdrs !~ /(?:^|\n)Connection/i;
    $hdrs = "Host: $ServerName\r\n$hdrs" if $hdrs !~ /(?:^|\n)Host:/i;
    my $all = "$line$hdrs\r\n$content";
    return [{ %{ $pk[0] }, value => $all }] if @pk == 1;

    # several packets: cut the new request at the matching places
    my $body_at = length($all) - length($content);
    my ($pos, $from, @out) = (0, 0);
    for my $i (0 .. $#pk) {
        $pos += length($pk[$i]{value} // '');
        my $to = $i == $#pk ? length $all
               : $pos < $head_len ? ($pos < length($line) - 2 ? $pos : length($line) - 2)
               : $body_at + $pos - $head_len - $skipped;
        $to = $from if $to < $from;
        $to = length $all if $to > length $all;
        push @out, { %{ $pk[$i] }, value => substr($all, $from, $to - $from) };
        $from = $to;
    }
    return \@out;
}

sub get_requests {
    my ($block, $ports) = @_;
    my $name = $block->name;
    if (defined $block->raw_request) {
        my $raw = $block->raw_request;
        return [[ map { { value => expand_env($_, $name, $ports) } }
                  ref $raw eq 'ARRAY' ? @$raw : ($raw) ]];
    }
    my $req = $block->request;
    bail_out("$name - Request line should be non-empty") unless defined $req;
    if (!ref $req) {
        1 while $req =~ s/^\s*\#[^\n]+\s+|^\s+//gs;
        $req = [$req];
    }
    bail_out("$name - invalid --- request: MUST be string or array of requests")
        if ref $req ne 'ARRAY';
    my $more = $block->more_headers // '';
    my @reqs;
    for my $i (0 .. $#$req) {
        my $hdr = ref $more eq 'ARRAY' ? $more->[$i] : $more;
        bail_out("$name - --- more_headers lacks data for the ${i}th request")
            unless defined $hdr;
        my @packets = map { ref $_ ? { %$_, value => expand_env($_->{value}, $name, $ports) }
                                   : expand_env($_, $name, $ports) }
                      ref $req->[$i] eq 'ARRAY' ? @{ $req->[$i] } : ($req->[$i]);
        push @reqs, build_request($name, expand_env($hdr, $name, $ports), \@packets);
    }
    return \@reqs;
}

sub send_request {
    my ($packets, $timeout, $block) = @_;
    my $name = $block->name;
    local $SIG{PIPE} = 'IGNORE';

    # retry while nginx (slow under valgrind) does not listen yet: under
    # valgrind on a loaded machine it took over 20 s (041 TEST 4); a
    # valgrind that has exited ends the wait at once
    my ($sock, $deadline) = (undef, time + ($UseValgrind ? 120 : 5));
    until ($sock = IO::Socket::INET->new(PeerAddr => $ServerAddr, Proto => 'tcp',
                                         PeerPort => $ServerPort, Timeout => $timeout))
    {
        if (time > $deadline || ($ChildPid && !is_running($ChildPid))) {
            Test::More::fail("$name - Can't connect to $ServerAddr:$ServerPort: $! (aborted)");
            return '';
        }
        sleep 0.05;
    }
    $sock->blocking(0);
    my $sel = IO::Select->new($sock);
    my ($resp, $idx, $off, $writing) = ('', 0, 0, 1);

    LOOP: while (1) {
        $! = 0;
        my ($r, $w) = IO::Select->select($sel, $writing ? $sel : undef, undef, $timeout);
        if (!$r && !$w) {
            next if $! == EINTR;
            Test::More::fail("ERROR: client socket timed out - $name\n")
                unless defined $block->abort;
            last;
        }
        while ($r && @$r) {
            my $n = sysread($sock, my $buf, 65536);
            last if !defined $n && ($! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR);
            warn "WARNING: $name - HTTP response read failure: $!\n" unless defined $n;
            last LOOP unless $n;
            $resp .= $buf;
        }
        next unless $writing && $w && @$w;

        my $data = \$packets->[$idx]{value};
        if ($off < length $$data) {
            my $n = syswrite($sock, $$data, length($$data) - $off, $off);
            if (!defined $n) {
                next if $! == EAGAIN || $! == EWOULDBLOCK || $! == EINTR;
                warn "WARNING: $name - write failed: $!\n";
                $writing = 0;    # still read what the server answered
            }
            $off += $n // 0;
            next if $writing && $off < length $$data;
        }
        next unless $writing &&= ++$idx <= $#$packets;
        $off = 0;
        my $delay = $packets->[$idx]{delay_before} // $block->raw_request_middle_delay;
        sleep $delay if $delay;
    }
    close $sock;
    return $resp;
}

sub parse_response {
    my ($name, $raw, $is_head) = @_;
    my $raw_headers = $raw =~ /\A(.*?\r\n)\r\n/s ? $1 : '';
    my $res = HTTP::Response->parse($raw);
    my $code = $res->code;
    $res->code(undef) if defined $code && $code !~ /^\d+$/;
    return ($res, $raw_headers) if $code && $code =~ /^(?:304|101)$/;

    my $te = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    if (defined $te && $te eq 'chunked') {
        my ($body, $pos, $out) = ($res->content // '', 0, '');
        while (1) {
            my $eol = index($body, "\r\n", $pos);
            my $size = $eol < 0 ? '' : substr($body, $pos, $eol - $pos);
            if ($size !~ /^[ \t]*([0-9A-Fa-f]+)[ \t]*(?:;.*)?$/s) {
                Test::More::fail("$name - invalid chunked body received: "
                                 . substr($body, $pos, 80));
                return;
            }
            ($size, $pos) = (hex $1, $eol + 2);
            last if $size == 0;
            if (length($body) < $pos + $size + 2 || substr($body, $pos + $size, 2) ne "\r\n") {
                Test::More::fail("$name - invalid chunked data received");
                return;
            }
            $out .= substr($body, $pos, $size);
            $pos += $size + 2;
        }
        $res->content($out);
    } elsif (defined $len && $len =~ /^\d+$/) {
        my $got = length($res->content // '');
        $res->content(substr($res->content, 0, $len)) if $got > $len;
        warn "WARNING: $name - response body truncated: $len expected, but got $got\n"
            if $got < $len && !$is_head;
    }
    return ($res, $raw_headers);
}

sub run_requests {
    my ($block, $rep, $ports) = @_;
    my $name = $block->name;
    my $reqs = get_requests($block, $ports);
    bail_out("$name - request empty") unless @$reqs;
    my $timeout = (parse_time(scalar $block->timeout) // $Timeout) * $Scale;
    my $wait = parse_time(scalar $block->wait);

    for my $idx (0 .. $#$reqs) {
        my $is_head = $reqs->[$idx][0]{value} =~ /^\s*HEAD\s/;
        # under valgrind NGINX listens long before its workers can answer
        # (more than 12 s on a loaded machine): a block's first request
        # waits for them as well
        my $first = $UseValgrind && $idx == 0 && $rep == 0 ? 60 : 0;
        my $raw = send_request($reqs->[$idx], $timeout + $first, $block);
        if (!defined $block->ignore_response) {
            my ($res, $raw_headers) = parse_response($name, $raw, $is_head);
            check_response($block, $res, $raw_headers // '', $idx, $rep, @$reqs > 1);
        }
        next if $idx == $#$reqs;
        sleep $wait if $wait;
        check_error_log($block, $rep);
    }
    sleep $wait if $wait;
    if (grep { defined $block->{$_} } keys %StapSections) {
        SKIP: { skip("$name - stap_out - tests skipped due to env "
                     . "TEST_NGINX_USE_STAP is not set", 1) }
    }
    check_error_log($block, $rep);
}

# ---- checks ----

sub trim {
    my $s = shift;
    $s =~ s/^\s+|\s+$//g if defined $s;
    return $s;
}

sub parse_time {
    my $t = trim(shift);
    return undef unless defined $t && length $t;
    return $1 / 1000 if $t =~ /^([\d.]+)ms$/;
    $t =~ s/s$//;
    return $t;
}

sub fmt_str {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

# the expectation for request $idx: with several requests, an ARRAY is needed
sub expected {
    my ($block, $section, $idx, $need_array) = @_;
    my $value = $block->$section;
    return $value->[$idx] if ref $value eq 'ARRAY';
    bail_out($block->name . " - You asked for many requests, the expected "
             . "results should be arrays as well.") if $need_array;
    return $value;
}

sub parse_headers {
    my @list;
    for my $line (map { trim($_) } split /\n/, shift // '') {
        next unless length $line;
        if ($line =~ s/^!\s*//) { push @list, [$line, undef]; next }
        my ($key, $val) = split /\s*:\s*/, $line, 2;
        push @list, [$key, $val // ''];
    }
    return @list;
}

sub check_response {
    my ($block, $res, $raw_headers, $idx, $rep, $need_array) = @_;
    my $name = $block->name;
    my @e = ($idx, $need_array);

    my $code = ($res && $res->code) || '';
    if (defined $block->error_code_like) {
        my $pat = expected($block, 'error_code_like', @e);
        Test::More::like($code, qr/$pat/sm, "$name - status code ok");
    } else {
        my $want = defined $block->error_code ? trim(expected($block, 'error_code', @e)) : 200;
        Test::More::is($code, $want, "$name - status code ok");
    }

    my $header = sub { ($res ? $res->header(shift) : undef) // '' };
    if (defined $block->response_headers) {
        for (parse_headers(expected($block, 'response_headers', @e))) {
            my ($key, $val) = @$_;
            if (!defined $val) {
                Test::More::unlike($raw_headers, qr/^\s*\Q$key\E\s*:/msi,
                                   "$name - header $key not present in the raw headers");
                next;
            }
            $val =~ s/\$ServerPort\b/$ServerPort/g;
            Test::More::is($header->($key), $val, "$name - header $key ok");
        }
    } elsif (defined $block->response_headers_like) {
        for (parse_headers(expected($block, 'response_headers_like', @e))) {
            my ($key, $val) = ($_->[0], $_->[1] // '');
            Test::More::like($header->($key), qr/^$val$/, "$name - header $key like ok");
        }
    }

    my $content = $res ? $res->content : undef;
    my $where = "(repeated req $rep, req $idx)";
    if (defined $block->response_body) {
        my $want = expected($block, 'response_body', @e);
        if (ref $want) {
            Test::More::like($content, $want, "$name - response_body - like $where");
        } else {
            $want =~ s/\$ServerPort\b/$ServerPort/g if defined $want;
            is_str($content, $want, "$name - response_body - response is expected $where");
        }
    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my $type = defined $block->response_body_like ? 'like' : 'unlike';
        my $pat = expected($block, "response_body_$type", @e);
        $pat =~ s/\$ServerPort\b/$ServerPort/g unless ref $pat;
        (my $summary = trim($content) // '') =~ s/\s+/ /g;
        my $cmp = $type eq 'like' ? \&Test::More::like : \&Test::More::unlike;
        $cmp->($content, qr/$pat/s, "$name - response_body_$type - response is expected ($summary)");
    }

    $_->($block, $content, $idx, $rep, 0) for @ResponseBodyChecks;
}

# New error.log lines since the last call (all of them with
# check_accum_error_log), preceded by nginx's start-up stderr if unread.
sub error_log_data {
    sleep $Sleep * 3;    # let nginx finish the log phase
    my @lines;
    if ($StderrUnread || $CheckAccumErrLog) {
        push @lines, split /^/m, slurp($StderrFile) // '';
        $StderrUnread = 0;
    }
    if (open my $in, '<', $ErrLogFile) {
        seek $in, $ErrLogPos, 0 unless $CheckAccumErrLog;
        push @lines, <$in>;
        $ErrLogPos = tell $in unless $CheckAccumErrLog;
    }
    return \@lines;
}

sub to_patterns {
    my $p = shift;
    return [$p] if ref $p eq 'Regexp';
    return [@$p] if ref $p;
    chomp $p;
    return [split /\n+/, $p];
}

# One assertion per pattern: it must match a line ($must) or none.
sub check_patterns {
    my ($name, $lines, $pats, $must, $suffix) = @_;
    for my $pat (grep { defined } @{ to_patterns($pats) }) {
        my ($hit) = grep { ref $pat ? $_ =~ $pat : index($_, $pat) >= 0 } @$lines;
        if ($must) {
            Test::More::ok(defined $hit, "$name - pattern \"$pat\" " . (defined $hit
                ? 'matches' : 'should match') . " a line in error.log$suffix");
        } elsif (defined $hit) {
            Test::More::fail("$name - pattern \"" . fmt_str($pat) . "\" should not match "
                . "any line in error.log but matches line \"" . fmt_str($hit) . "\"$suffix");
        } else {
            Test::More::pass("$name - pattern \"" . fmt_str($pat)
                             . "\" does not match a line in error.log$suffix");
        }
    }
}

sub check_error_log {
    my ($block, $rep) = @_;
    my $name = $block->name;
    my $lines = error_log_data();
    my $suffix = " (req $rep)";

    my ($grep, $want) = ($block->grep_error_log, $block->grep_error_log_out);
    bail_out("$name - --- grep_error_log and --- grep_error_log_out go together")
        if defined $grep != defined $want;
    if (defined $grep) {
        $grep = $grep->[$rep] if ref $grep eq 'ARRAY';
        $want = $want->[$rep] if ref $want eq 'ARRAY';
        my $got = '';
        for (@$lines) {
            next unless ref $grep ? $_ =~ $grep : $_ =~ /\Q$grep\E/;
            $got .= "$&\n" if $& !~ /\n/;
        }
        is_str($got, $want, "$name - grep_error_log_out$suffix");
    }

    my %quiet;
    for my $sec (qw(error_log no_error_log)) {
        my $pats = $block->$sec;
        next unless defined $pats;
        for my $p (grep { !ref } @{ to_patterns($pats) }) {
            $quiet{$1} = 1 while $p =~ /\[(alert|crit|emerg)/g;
        }
        check_patterns($name, $lines, $pats, $sec eq 'error_log', $suffix);
    }
    for my $line (@$lines) {
        warn "WARNING: $name - " . fmt_str($line) . "\n"
            if $line =~ /\[(alert|crit|emerg)\]/ && !$quiet{$1};
        Test::More::fail("$name - " . fmt_str($line)) if $line =~ /\bAssertion .*?failed\b/;
    }
}

# The previous block's log once its nginx has stopped (next block or END).
# As in the original, no_shutdown_error_log needs shutdown_error_log.
sub check_shutdown_error_log {
    my $block = $PrevBlock;
    return unless $block && defined $block->shutdown_error_log;
    undef $PrevBlock;
    my $name = $block->name;
    if ($NoClean) {
        SKIP: { skip("$name - shutdown_error_log - skipped due to TEST_NGINX_NO_CLEAN", 1) }
        return;
    }
    my $lines = error_log_data();
    check_patterns($name, $lines, scalar $block->no_shutdown_error_log, 0, '')
        if defined $block->no_shutdown_error_log;
    check_patterns($name, $lines, scalar $block->shutdown_error_log, 1, '');
}

1;
