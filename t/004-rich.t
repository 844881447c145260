# Rich notifications: decryption, byte for byte, and every way it can fail.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

no_shuffle();

# about decryption: validation tokens are checked in 013-validation-tokens.t
$GraphNotify::HTTP_CONFIG = $GraphNotify::RICH_HTTP_CONFIG;

# the raw text of "decryptedResource" in an output line
sub decrypted_raw {
    my ($line) = @_;
    $line =~ /,"decryptedResource":(.*)\}\z/s or return undef;
    return $1;
}

sub drop_block {
    my ($fault, $reason, $text) = @_;
    return <<"END";
my \@l = wait_lines(1, 1);
is(scalar \@l, 0, "nothing written");
my \$st = status();
is(\$st->{items}{dropped}{$reason}, 1, "counted as $reason");
is(\$st->{items}{decryptFailures}, 1, "counted as a decryption failure");
is(log_count(qr/graph_notify: dropped 1 of 1 item\\(s\\) \\($reason=1\\); first: item 0, subscription sub-rich-1: \\Q$text\\E/), 1, "one log line");
END
}

run_tests();

__DATA__

=== TEST 1: Microsoft's own vector decrypts to its expected plaintext, byte for byte
--- http_config
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_validation_tokens off;
    graph_notify_decryption_key custom-id-for-testing
        $TEST_NGINX_TOP/t/data/graph-sdk-rich-notification/cert.pem
        $TEST_NGINX_TOP/t/data/graph-sdk-rich-notification/key.pem;
--- request eval
"POST /graph/notify\n" . GraphNotify::json_encode({
    value => [{
        subscriptionId => "10493aa0-4d29-4df5-bc0c-ef742cc6cd7f",
        subscriptionExpirationDateTime => "2021-07-02T10:30:34.9097561-07:00",
        changeType => "created",
        resource => "teams('79852646-8963-4d32-95f1-e0c5237d37fa')/channels('19:etTE40ziboDEfQ1v0B96_nCVjGUsZ77LQa5KRb0cukQ1\@thread.tacv2')/messages('1625067617497')/replies('1625126194597')",
        resourceData => { id => "1625126194597", '@odata.type' => "#Microsoft.Graph.chatMessage" },
        encryptedContent => GraphNotify::json_decode(GraphNotify::vector("graph-sdk-rich-notification/encryptedContent.json")),
        tenantId => "8afd02d6-ebdd-4270-a515-c749898ea5c5" }],
    validationTokens => ["eyJ0eXAiOiJKV1QifQ.e30.c2ln"] })
--- error_code: 202
--- no_error_log
graph_notify: dropped
[error]
--- post_check
my @l = wait_lines(1);
is(scalar @l, 1, "one line");
my ($raw) = output_lines();
is(main::decrypted_raw($raw), vector("graph-sdk-rich-notification/expected-plaintext.json"),
   "decryptedResource is the expected plaintext, byte for byte");
is($l[0]{kind}, "rich", "kind");
is($l[0]{decryptedResource}{body}{content}, "Hello World", "parsed back");
ok(!exists $l[0]{encryptedContent}, "no ciphertext in the output");
unlike($raw, qr/validationTokens|eyJ0eXAi/, "no validation tokens in the output");



=== TEST 2: a notification encrypted for our test key: exact bytes, Unicode and all
--- request eval
"POST /graph/notify\n" . GraphNotify::rich_body()
--- error_code: 202
--- post_check
my @l = wait_lines(1);
my ($raw) = output_lines();
my $want = read_file(data_file("chat-message.json"));
$want =~ s/[\r\n]/ /g;
is(main::decrypted_raw($raw), $want, "as sent, line breaks made spaces");
is($l[0]{decryptedResource}{from}{user}{displayName}, "Zo\x{eb} M\x{fc}ller", "UTF-8 intact");
like($l[0]{resource}, qr{^users/[^/]+/callConversations/[^/]+\z}, "resource kept");



=== TEST 3: two keys at once, for rotation: the item names the second
--- http_config
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state secret-1;
    graph_notify_validation_tokens off;
    graph_notify_decryption_key test-key-1
        $TEST_NGINX_TOP/t/data/enc-test.crt $TEST_NGINX_TOP/t/data/enc-test.key;
    graph_notify_decryption_key test-key-2
        $TEST_NGINX_TOP/t/data/enc-test-2.crt $TEST_NGINX_TOP/t/data/enc-test-2.key;
--- request eval
"POST /graph/notify\n" . GraphNotify::rich_body(cert => GraphNotify::data_file("enc-test-2.crt"), cert_id => "test-key-2")
--- error_code: 202
--- post_check
my @l = wait_lines(1);
is($l[0]{decryptedResource}{id}, "1732550001234", "decrypted with the second key");



=== TEST 4: a wrong HMAC: dropped before decryption
--- request eval
"POST /graph/notify\n" . GraphNotify::rich_body(fault => "bad-hmac")
--- error_code: 202
--- post_check eval
main::drop_block("bad-hmac", "signature", "dataSignature does not match (HMAC-SHA256)")



=== TEST 5: bad padding
--- request eval
"POST /graph/notify\n" . GraphNotify::rich_body(fault => "bad-padding")
--- error_code: 202
--- post_check eval
main::drop_block("bad-padding", "decrypt", "AES-256-CBC decryption failed (bad padding)")



=== TEST 6: a data key that is not 32 bytes
--- request eval
"POST /graph/notify\n" . GraphNotify::rich_body(fault => "key-length")
--- error_code: 202
--- post_check eval
main::drop_block("key-length", "key_length", "data key is not 32 bytes long")



=== TEST 7: bad base64
--- request eval
"POST /graph/notify\n" . GraphNotify::rich_body(fault => "bad-base64")
--- error_code: 202
--- post_check eval
main::drop_block("bad-base64", "base64", "invalid base64 in encryptedContent")



=== TEST 8: an unknown certificate id
--- request eval
"POST /graph/notify\n" . GraphNotify::rich_body(fault => "unknown-id")
--- error_code: 202
--- post_check eval
main::drop_block("unknown-id", "unknown_key", "unknown encryptionCertificateId")



=== TEST 9: a thumbprint that is not our certificate's
--- request eval
"POST /graph/notify\n" . GraphNotify::rich_body(fault => "thumbprint")
--- error_code: 202
--- post_check eval
main::drop_block("thumbprint", "thumbprint", "encryptionCertificateThumbprint does not match the certificate")



=== TEST 10: content that is not JSON
--- request eval
"POST /graph/notify\n" . GraphNotify::rich_body(fault => "not-json")
--- error_code: 202
--- post_check eval
main::drop_block("not-json", "not_json", "decrypted content is not JSON")



=== TEST 11: a data key made for another key pair (no thumbprint sent)
--- request eval
my $b = GraphNotify::json_decode(GraphNotify::rich_body(cert => GraphNotify::data_file("enc-test-2.crt")));
delete $b->{value}[0]{encryptedContent}{encryptionCertificateThumbprint};
"POST /graph/notify\n" . GraphNotify::json_encode($b)
--- error_code: 202
--- post_check eval
main::drop_block("", "data_key", "dataKey does not decrypt with the private key")



=== TEST 12: encryptedContent without its fields is a malformed item
--- request eval
my $b = GraphNotify::json_decode(GraphNotify::rich_body());
delete $b->{value}[0]{encryptedContent}{dataKey};
"POST /graph/notify\n" . GraphNotify::json_encode($b)
--- error_code: 202
--- post_check
is(status()->{items}{dropped}{malformed}, 1, "malformed");
is(status()->{items}{decryptFailures}, 0, "not a decryption failure");



=== TEST 13: a good and a tampered item in one batch: the good one is kept
--- request eval
my $good = GraphNotify::json_decode(GraphNotify::rich_body());
my $bad = GraphNotify::json_decode(GraphNotify::rich_body(fault => "bad-hmac"));
push @{ $good->{value} }, @{ $bad->{value} };
"POST /graph/notify\n" . GraphNotify::json_encode($good)
--- error_code: 202
--- post_check
my @l = wait_lines(1);
is(scalar @l, 1, "the good one written");
is(status()->{items}{dropped}{signature}, 1, "the tampered one dropped");
