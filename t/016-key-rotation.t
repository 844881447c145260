# Rotating the encryption key of rich subscriptions: rich= changed in
# nginx.conf, the helper PATCHes the new certificate at once, items in
# flight for either key are decrypted and written, none lost.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;
use MIME::Base64;

master_on();
no_shuffle();
GraphNotify::start_sim();

our $T = '11111111-2222-3333-4444-555555555555';

# the certificate as a subscription carries it: base64 of its DER form
sub der64 {
    my $pem = GraphNotify::read_file(GraphNotify::data_file($_[0]));
    $pem =~ s/-----[^-]+-----|\s//g;
    return $pem;
}

sub graph_subs {
    return [ grep { ($_->{notificationUrl} // '') =~ /[?&]b=rot\b/ }
             @{ GraphNotify::sim_get('/_sim/subscriptions') } ];
}

sub rich {
    my ($key, $id) = @_;
    return GraphNotify::rich_body(cert => GraphNotify::data_file($key eq 'test-key-1' ? 'enc-test.crt' : 'enc-test-2.crt'),
                                  cert_id => $key, tenant => $T, signed => 1,
                                  content => GraphNotify::data_file('chat-message.json'),
                                  subscription => $id);
}

# a key id of 120 characters, as long as ids go in practice and more
sub long_id { sprintf("k%02d", $_[0]) . ("x" x 117) }

run_tests();

__DATA__

=== TEST 1: rich= moved to a new key: PATCHed at once, both keys' items written
--- http_config eval
GraphNotify::graph_config(extra =>
    "graph_notify_subscription \"user/{id}/callConversations\" tenant=$main::T "
    . "url=http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/graph/notify?b=rot "
    . "rich=test-key-1 users=$ENV{TEST_NGINX_TOP}/t/data/users.txt;")
--- config
    location = /graph/notify {
        graph_notify;
        graph_notify_decryption_key test-key-1
            $TEST_NGINX_TOP/t/data/enc-test.crt $TEST_NGINX_TOP/t/data/enc-test.key;
        graph_notify_decryption_key test-key-2
            $TEST_NGINX_TOP/t/data/enc-test-2.crt $TEST_NGINX_TOP/t/data/enc-test-2.key;
    }
    location = /graph/status { graph_notify_status; }
--- request
GET /graph/status
--- error_code: 200
--- post_check
ok(wait_for(sub { my $s = main::graph_subs(); @$s == 2 }), "two rich subscriptions at Graph");
my $subs = main::graph_subs();
is(join(",", map { $_->{encryptionCertificateId} } @$subs), "test-key-1,test-key-1", "with the first key");
is($subs->[0]{encryptionCertificate}, main::der64('enc-test.crt'), "and its certificate");
my $id = $subs->[0]{id};
my $ids = join(",", sort map { $_->{id} } @$subs);

# in flight before the rotation: encrypted for the first key
is(http_post(notify_url() . "?b=rot", main::rich('test-key-1', $id))->{status}, 202, "an item for the first key");
is(scalar(wait_lines(1)), 1, "written");

rewrite_conf("rich=test-key-1", "rich=test-key-2");
ok(reload_nginx(), "reloaded with rich=test-key-2");
ok(wait_for(sub { !grep { $_->{encryptionCertificateId} ne 'test-key-2' } @{ main::graph_subs() } }, 15),
   "both subscriptions moved to the new key at once, long before a renewal");
$subs = main::graph_subs();
ok(!(grep { $_->{encryptionCertificate} ne main::der64('enc-test-2.crt') } @$subs), "with its certificate");
is(join(",", sort map { $_->{id} } @$subs), $ids, "the same subscriptions, not new ones");
cmp_ok(log_count(qr/graph_notify: subscription \S+ uses another encryption key than "test-key-2", sending its certificate/), '==', 2, "logged once each");

# Graph still retries deliveries made for the old key, and sends new ones
for my $k (qw(test-key-1 test-key-2 test-key-1 test-key-2)) {
    is(http_post(notify_url() . "?b=rot", main::rich($k, $id))->{status}, 202, "an item for $k");
}
my @l = wait_lines(5);
is(scalar @l, 5, "every item written");
my $st = status();
is($st->{items}{decryptFailures}, 0, "none failed to decrypt");
is($st->{validationTokens}{valid}, 5, "every batch's token valid");
my %k = map { $_->{id} => $_ } @{ $st->{decryptionKeys} };
ok($k{'test-key-1'} && $k{'test-key-2'}, "the status page shows both keys");
cmp_ok($k{'test-key-2'}{lastDecryptAge}, '<', 60, "when each last decrypted");
unlike(status_text(), qr/PRIVATE KEY/, "no private key on the status page");
is(log_count(qr/PRIVATE KEY/), 0, "nor in the log");



=== TEST 2: 32 keys with long ids, each used: the status pages show them all, whole
--- http_config eval
$GraphNotify::RICH_HTTP_CONFIG =~ s/graph_notify_decryption_key[^;]*;//r
--- config eval
"location = /graph/notify {\n    graph_notify;\n"
. join("", map { "    graph_notify_decryption_key " . main::long_id($_)
                 . " \$TEST_NGINX_TOP/t/data/enc-test.crt \$TEST_NGINX_TOP/t/data/enc-test.key;\n" } 1 .. 32)
. "}\nlocation = /graph/status { graph_notify_status; }\n"
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $body = GraphNotify::rich_body(cert_id => 'ID');
for my $n (1 .. 32) {
    my $id = main::long_id($n);
    is(http_post("/graph/notify", $body =~ s/"encryptionCertificateId":"ID"/"encryptionCertificateId":"$id"/r)->{status},
       202, "an item for key $n") or last;
}
ok(wait_for(sub { @{ status()->{decryptionKeys} } == 32 }), "the status page shows the 32 keys");
my $prom = status_text("?format=prometheus");
my @lines = $prom =~ /^graph_notify_decryption_key_last_used_seconds\{id="k\d\dx+"\} \d+$/mg;
is(scalar @lines, 32, "so does the Prometheus page");
like($prom, qr/\n\z/, "whole");
