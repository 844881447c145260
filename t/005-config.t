# Configuration is checked at "nginx -t": a clear message with file and line.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;
use HTTP::Tiny;

no_shuffle();
run_tests();

# With no graph_notify_path or graph_notify_output, the helper's directory
# and the output go beside the body temp path and the access log compiled
# into NGINX (/var/lib/nginx, /var/log/nginx on Debian).  To use those
# defaults without writing there, a second NGINX runs in a private mount
# namespace where the two directories are the server root's own (its
# *_temp folder, which the runner removes with the others).
sub default_dirs_check {
    my $nginx = $ENV{TEST_NGINX_BINARY};
    my $v = `$nginx -V 2>&1`;
    my ($log) = $v =~ /--http-log-path=(\S+)/;
    my ($body) = $v =~ /--http-client-body-temp-path=(\S+)/;
    my ($logdir) = ($log // '') =~ m{^(/.*)/[^/]+$};
    my ($libdir) = ($body // '') =~ m{^(/.*)/[^/]+$};

    SKIP: {
        skip("needs root, unshare --mount and absolute compiled-in paths", 4)
            unless $> == 0 && $logdir && $libdir && -d $logdir && -d $libdir
                   && system('unshare --mount --propagation private true '
                             . '>/dev/null 2>&1') == 0;

        my $root = GraphNotify::servroot() . "/defaults_temp";
        mkdir $_ for $root, "$root/logs", "$root/log", "$root/lib";
        my $port = GraphNotify::free_port();    # held until the file ends
        open my $fh, '>', "$root/nginx.conf" or die $!;
        print $fh <<"END";
load_module $ENV{TEST_NGINX_LOAD_MODULES};
user root;
worker_processes 1;
pid $root/logs/nginx.pid;
error_log $root/logs/error.log info;
events { worker_connections 64; }
http {
    graph_notify_client_state secret-1;
    server {
        listen 127.0.0.1:$port;
        location = /graph/notify { graph_notify; }
    }
}
END
        close $fh;

        my $rc = system('unshare', '--mount', '--propagation', 'private',
            'sh', '-c', 'mount --bind "$1" "$2" && mount --bind "$3" "$4" '
                        . '&& exec "$5" -p "$6" -c "$6/nginx.conf"',
            'sh', "$root/log", $logdir, "$root/lib", $libdir, $nginx,
            "$root/");
        is($rc, 0, "nginx starts with the default paths");

        my $res = HTTP::Tiny->new(timeout => 10 * valgrind_factor())->post(
            "http://127.0.0.1:$port/graph/notify",
            { content => GraphNotify::basic_body(),
              headers => { 'Content-Type' => 'application/json' } });
        is($res->{status}, 202, "a notification is accepted");

        my $out = "$root/log/graph_notify.ndjson";
        ok(wait_for(sub { my $s = read_file($out); $s && $s =~ /\n/ }),
           "the item is written to graph_notify.ndjson beside the access log");
        ok(-d "$root/lib/graph_notify",
           "the helper's directory graph_notify is beside the body temp path");

        my $pid = read_file("$root/logs/nginx.pid");
        if ($pid && $pid =~ /(\d+)/) {
            $pid = $1;
            kill 'QUIT', $pid;
            wait_for(sub { !kill 0, $pid }, 10);
        }
    }
}

__DATA__

=== TEST 1: a zone without a size
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_zone graph_notify;
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid zone "graph_notify", expected NAME:SIZE in .*nginx\.conf:\d+/



=== TEST 2: a zone that is too small
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_zone graph_notify:64k;
--- must_die
--- error_log eval
qr/\[emerg\] .*zone "graph_notify:64k" is too small, at least 256k needed in .*nginx\.conf:\d+/



=== TEST 3: a bad max_items
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_zone graph_notify:1m max_items=lots;
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid max_items "max_items=lots" in .*nginx\.conf:\d+/



=== TEST 4: a tenant that is not a GUID
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_zone graph_notify:1m;
    graph_notify_tenant contoso.onmicrosoft.com;
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid tenant id "contoso.onmicrosoft.com", expected a GUID in .*nginx\.conf:\d+/



=== TEST 5: a client state over 255 characters, and its value never echoed
--- http_config eval
"graph_notify_zone graph_notify:1m;\ngraph_notify_path graph_notify_temp;\n"
. "graph_notify_output logs/graph_notify.ndjson;\n"
. "graph_notify_client_state " . ("s" x 256) . ";"
--- must_die
--- error_log eval
qr/\[emerg\] .*client state is longer than 255 characters in .*nginx\.conf:\d+/
--- no_error_log eval
qr/sssssss/



=== TEST 6: a client state file that is missing, or holds two lines
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_zone graph_notify:1m;
    graph_notify_client_state file:/nonexistent/client_state;
--- must_die
--- error_log eval
qr/\[emerg\] .*open\(\) "\/nonexistent\/client_state" failed \(2: No such file or directory\) in .*nginx\.conf:\d+/



=== TEST 7: a client state file of two lines
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_zone graph_notify:1m;
    graph_notify_client_state file:$TEST_NGINX_TOP/t/data/README;
--- must_die
--- error_log eval
qr/\[emerg\] .*client state file ".*README" must hold one line in .*nginx\.conf:\d+/



=== TEST 8: a key file that is not there
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_zone graph_notify:1m;
    graph_notify_decryption_key k1 $TEST_NGINX_TOP/t/data/enc-test.crt /nonexistent.key;
--- must_die
--- error_log eval
qr/\[emerg\] .*cannot open decryption private key "\/nonexistent.key": .* in .*nginx\.conf:\d+/



=== TEST 9: a key that does not belong to the certificate
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_zone graph_notify:1m;
    graph_notify_decryption_key k1 $TEST_NGINX_TOP/t/data/enc-test.crt $TEST_NGINX_TOP/t/data/enc-test-2.key;
--- must_die
--- error_log eval
qr/\[emerg\] .*private key ".*enc-test-2.key" does not match certificate ".*enc-test.crt" in .*nginx\.conf:\d+/



=== TEST 10: an EC key, and an RSA key of 1024 bits
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_zone graph_notify:1m;
    graph_notify_decryption_key k1 $TEST_NGINX_TOP/t/data/ec-test.crt $TEST_NGINX_TOP/t/data/ec-test.key;
--- must_die
--- error_log eval
qr/\[emerg\] .*private key ".*ec-test.key" is not an RSA key in .*nginx\.conf:\d+/



=== TEST 11: an RSA key of 1024 bits
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_zone graph_notify:1m;
    graph_notify_decryption_key k1 $TEST_NGINX_TOP/t/data/rsa1024-test.crt $TEST_NGINX_TOP/t/data/rsa1024-test.key;
--- must_die
--- error_log eval
qr/\[emerg\] .*private key ".*rsa1024-test.key" has 1024 bits, Graph needs 2048 to 4096 in .*nginx\.conf:\d+/



=== TEST 12: a certificate that is not PEM
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_zone graph_notify:1m;
    graph_notify_decryption_key k1 $TEST_NGINX_TOP/t/data/README $TEST_NGINX_TOP/t/data/enc-test.key;
--- must_die
--- error_log eval
qr/\[emerg\] .*cannot read PEM decryption certificate ".*README": .* in .*nginx\.conf:\d+/



=== TEST 13: the same certificate id twice
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_zone graph_notify:1m;
    graph_notify_decryption_key k1 $TEST_NGINX_TOP/t/data/enc-test.crt $TEST_NGINX_TOP/t/data/enc-test.key;
    graph_notify_decryption_key k1 $TEST_NGINX_TOP/t/data/enc-test-2.crt $TEST_NGINX_TOP/t/data/enc-test-2.key;
--- must_die
--- error_log eval
qr/\[emerg\] .*duplicate certificate id "k1" in .*nginx\.conf:\d+/



=== TEST 14: graph_notify in a location with another content handler
--- config
    location = /x { proxy_pass http://127.0.0.1:1; graph_notify; }
--- must_die
--- error_log eval
qr/\[emerg\] .*"graph_notify" directive is duplicate or conflicts with another content handler in .*nginx\.conf:\d+/



=== TEST 17: a notification location without a client state is warned about
--- http_config
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
--- config
    location = /graph/notify { graph_notify; }
--- request
POST /graph/notify?validationToken=x
--- error_code: 200
--- error_log eval
qr/\[warn\] .*no graph_notify_client_state for this location: anyone who knows the URL can post notifications in .*nginx\.conf:\d+/



=== TEST 15: the default zone: no zone set, yet it works
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state secret-1;
--- config
    location = /graph/notify { graph_notify; }
    location = /graph/status { graph_notify_status; }
--- request eval
"POST /graph/notify\n" . GraphNotify::basic_body()
--- error_code: 202
--- post_check
my $st = status();
is($st->{queue}{zoneSize}, 16 * 1024 * 1024, "16m zone by default");
is($st->{queue}{maxItems}, int(16 * 1024 * 1024 / 768),
   "as many items by default as the zone holds (768 bytes each)");
is(scalar(wait_lines(1)), 1, "the item is written");



=== TEST 18: the default output and helper directory, without writing there
--- request
GET /
--- post_check
main::default_dirs_check();



=== TEST 16: the zone of another module cannot be taken
--- http_config
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    limit_req_zone $binary_remote_addr zone=graph_notify:1m rate=1r/s;
    graph_notify_zone graph_notify:1m;
--- must_die
--- error_log eval
qr/\[emerg\] .*the shared memory zone "graph_notify" is already declared for a different use/
