# Validation tokens of rich notifications: signed by the simulator's
# identity platform, checked by the helper before anything is written.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

master_on();
no_shuffle();
GraphNotify::start_sim();

our $TENANT = '11111111-2222-3333-4444-555555555555';
our $OTHER = '99999999-8888-4777-8666-555555555555';
our $SECOND_APP = '7c9e6679-7425-40de-944b-e07fc1f90ae7';

$GraphNotify::HTTP_CONFIG = GraphNotify::graph_config(extra =>
    "graph_notify_decryption_key test-key-1 \$TEST_NGINX_TOP/t/data/enc-test.crt \$TEST_NGINX_TOP/t/data/enc-test.key;");

# a batch refused for $reason: nothing written, counted, one log line
sub refused {
    my ($reason, $n) = @_;
    $n ||= 1;
    return <<"END";
ok(wait_for(sub { status()->{validationTokens}{dropped}{$reason} == $n }), "$n item(s) dropped as $reason");
my \@l = wait_lines(1, 0.5);
is(scalar \@l, 0, "nothing written");
my \$st = status();
is(\$st->{queue}{items}, 0, "the batch left the queue");
is(\$st->{validationTokens}{valid}, 0, "no valid batch");
is(log_count(qr/graph_notify: dropped $n item\\(s\\) of a batch of subscription sub-rich-1: validation tokens refused \\($reason\\)/), 1, "one log line");
is(log_count(qr/eyJ/), 0, "no token text in the log");
END
}

# "request eval" bodies are made when the file is read: the blocks that
# rotate the simulator's signing keys come last and sign in post_check.
sub body { "POST /graph/notify\n" . GraphNotify::rich_body(signed => 1, @_) }

run_tests();

__DATA__

=== TEST 1: a good v2 token: the batch is written
--- request eval
main::body()
--- error_code: 202
--- post_check
my @l = wait_lines(1);
is(scalar @l, 1, "written");
is($l[0]{kind}, "rich", "the rich item");
my $st = status()->{validationTokens};
ok($st->{enabled}, "checking");
is($st->{valid}, 1, "one valid batch");
is($st->{waiting}, 0, "nothing waits");
cmp_ok($st->{keys}, '>=', 1, "the signing keys are known");
is($st->{fetches}, 1, "fetched once");
cmp_ok(sim_count("jwks"), '>=', 1, "fetched from the identity platform");
cmp_ok(sim_count("openid"), '>=', 1, "through its OpenID metadata");
unlike(read_file(output_file()), qr/eyJ/, "no token in the output");
is(log_count(qr/eyJ/), 0, "nor in the log");



=== TEST 2: a good v1 token (appid, sts.windows.net)
--- request eval
main::body(token_version => 1)
--- error_code: 202
--- post_check
my @l = wait_lines(1);
is(scalar @l, 1, "written");
is(status()->{validationTokens}{valid}, 1, "valid");



=== TEST 3: another app's audience
--- request eval
main::body(token_fault => "audience")
--- error_code: 202
--- post_check eval
main::refused("audience")



=== TEST 4: not the change-notification publisher (azp, v2)
--- request eval
main::body(token_fault => "publisher")
--- error_code: 202
--- post_check eval
main::refused("publisher")



=== TEST 5: not the change-notification publisher (appid, v1)
--- request eval
main::body(token_fault => "publisher", token_version => 1)
--- error_code: 202
--- post_check eval
main::refused("publisher")



=== TEST 6: expired a day ago
--- request eval
main::body(token_fault => "expired")
--- error_code: 202
--- post_check eval
main::refused("expired")



=== TEST 7: valid only from an hour on, beyond the clock skew
--- request eval
main::body(token_fault => "not-yet-valid")
--- error_code: 202
--- post_check eval
main::refused("expired")



=== TEST 8: a signature that does not verify
--- request eval
main::body(token_fault => "signature")
--- error_code: 202
--- post_check eval
main::refused("signature")



=== TEST 9: "alg":"none" is not a signature
--- request eval
main::body(token_fault => "alg-none")
--- error_code: 202
--- post_check eval
main::refused("signature")



=== TEST 10: an issuer that is not the identity platform
--- request eval
main::body(token_fault => "issuer")
--- error_code: 202
--- post_check eval
main::refused("issuer")



=== TEST 11: the issuer of another tenant (v1 form)
--- request eval
main::body(token_fault => "issuer-tenant", token_version => 1)
--- error_code: 202
--- post_check eval
main::refused("issuer")



=== TEST 12: a token that is not a JWT
--- request eval
main::body(token_fault => "malformed")
--- error_code: 202
--- post_check eval
main::refused("malformed")



=== TEST 13: no validation tokens at all
--- request eval
"POST /graph/notify\n" . GraphNotify::rich_body(tokens => [])
--- error_code: 202
--- post_check eval
main::refused("missing")



=== TEST 14: a batch of two tenants with a token for one: both items dropped
--- request eval
my $b = GraphNotify::json_decode(GraphNotify::rich_body(signed => 1));
my $o = GraphNotify::json_decode(GraphNotify::rich_body(tenant => $main::OTHER));
push @{ $b->{value} }, @{ $o->{value} };
"POST /graph/notify\n" . GraphNotify::json_encode($b)
--- error_code: 202
--- post_check eval
main::refused("missing", 2)



=== TEST 15: two tenants, a token for each: written
--- request eval
my $b = GraphNotify::json_decode(GraphNotify::rich_body(signed => 1));
my $o = GraphNotify::json_decode(GraphNotify::rich_body(tenant => $main::OTHER, signed => 1, token_version => 1));
push @{ $b->{value} }, @{ $o->{value} };
push @{ $b->{validationTokens} }, @{ $o->{validationTokens} };
"POST /graph/notify\n" . GraphNotify::json_encode($b)
--- error_code: 202
--- post_check
my @l = wait_lines(2);
is(scalar @l, 2, "both written");
is(status()->{validationTokens}{valid}, 1, "one valid batch");



=== TEST 16: a kid the key set does not list: fetched again once, then refused
--- request eval
main::body(token_fault => "unknown-kid")
--- error_code: 202
--- post_check
ok(wait_for(sub { status()->{validationTokens}{dropped}{unknown_kid} == 1 }), "dropped as unknown_kid");
is(status()->{validationTokens}{fetches}, 2, "after one more fetch of the key set");
is(log_count(qr/validation tokens refused \(unknown_kid\)/), 1, "one log line");
is(scalar(wait_lines(1, 0.5)), 0, "nothing written");



=== TEST 17: the key set cannot be had: rich items wait, then are written
--- request
POST /graph/notify?validationToken=x
--- error_code: 200
--- post_check
ok(wait_for(sub { status()->{validationTokens}{keys} >= 1 }), "key set fetched");
sim_faults(status_queue => [{ status => 503, kind => "jwks", count => -1 }]);
unlink "$ENV{TEST_NGINX_SERVER_ROOT}/graph_notify_temp/jwks.json" or die "unlink: $!";
my $old = helper_pid();
kill 'KILL', $old;
ok(wait_helper_pid($old), "a new helper, without a kept key set");
is(http_post(notify_url(), rich_body(signed => 1))->{status}, 202, "accepted");
ok(wait_for(sub { status()->{validationTokens}{waiting} == 1 }), "the item waits");
ok(wait_for(sub { status()->{validationTokens}{lastError} =~ /HTTP 503/ }), "the status page says why");
is(status()->{queue}{items}, 1, "still queued");
is(scalar(wait_lines(1, 1, 1)), 0, "not written");
is(status()->{validationTokens}{dropped}{unknown_kid}, 0, "not dropped");
cmp_ok(log_count(qr/graph_notify: cannot fetch the key set of the identity platform: key set: HTTP 503, rich items wait/), '>=', 1, "logged");
sim_faults();
my @l = wait_lines(1, 40);
is(scalar @l, 1, "written once the key set answers");
my $st = status();
is($st->{validationTokens}{waiting}, 0, "nothing waits");
is($st->{validationTokens}{lastError}, "", "no error");
status_is(sub { $_[0]{queue}{items} }, 0, "the queue is empty");
is(log_count(qr/the key set of the identity platform can be had again/), 1, "logged");



=== TEST 18: a new helper validates with the kept key set before its first fetch
--- request eval
main::body()
--- error_code: 202
--- post_check
my @l = wait_lines(1);
is(scalar @l, 1, "written");
ok(-s "$ENV{TEST_NGINX_SERVER_ROOT}/graph_notify_temp/jwks.json", "key set kept in the helper's directory");
# synced, so that the item is done with before the kill
status_is(sub { $_[0]{items}{written} }, 1, "counted once synced");
sim_faults(status_queue => [{ status => 503, kind => "openid", count => -1 },
                            { status => 503, kind => "jwks", count => -1 }]);
my $before = sim_count("openid");
my $old = helper_pid();
kill 'KILL', $old;
ok(wait_helper_pid($old), "a new helper");
is(http_post(notify_url(), rich_body(signed => 1))->{status}, 202, "accepted");
@l = wait_lines(2);
is(scalar @l, 2, "written by the new helper");
is(sim_count("openid"), $before, "without a fetch");
sim_faults();



=== TEST 19: the status page: per decryption key, when it last decrypted
--- request eval
main::body()
--- error_code: 202
--- post_check
wait_lines(1);
my ($k) = grep { $_->{id} eq "test-key-1" } @{ status()->{decryptionKeys} };
ok($k, "test-key-1 listed");
cmp_ok(abs($k->{lastDecrypt} - time), '<', 60, "with the time of its last decryption");
cmp_ok($k->{lastDecryptAge}, '<', 60, "and its age");
my $p = status_text("?format=prometheus");
like($p, qr/^graph_notify_decryption_key_last_used_seconds\{id="test-key-1"\} \d+$/m, "prometheus: key use");
like($p, qr/^graph_notify_validation_dropped_total\{reason="signature"\} 0$/m, "prometheus: drops");
like($p, qr/^graph_notify_validation_batches_total\{outcome="valid"\} 1$/m, "prometheus: batches");
unlike(status_text(), qr/BEGIN|PRIVATE/, "no key material");



=== TEST 20: several audiences
--- http_config eval
GraphNotify::graph_config(extra => "graph_notify_validation_audience $main::SECOND_APP $GraphNotify::APP_ID;\n    graph_notify_decryption_key test-key-1 \$TEST_NGINX_TOP/t/data/enc-test.crt \$TEST_NGINX_TOP/t/data/enc-test.key;")
--- request eval
main::body(app_id => $main::SECOND_APP)
--- error_code: 202
--- post_check
my @l = wait_lines(1);
is(scalar @l, 1, "the second app's token is accepted");
http_post(notify_url(), rich_body(signed => 1));
@l = wait_lines(2);
is(scalar @l, 2, "and the first's");



=== TEST 21: the check turned off (tests only): warned about, unsigned tokens pass
--- http_config
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state secret-1;
    graph_notify_validation_tokens off;
    graph_notify_decryption_key test-key-1
        $TEST_NGINX_TOP/t/data/enc-test.crt $TEST_NGINX_TOP/t/data/enc-test.key;
--- request eval
"POST /graph/notify\n" . GraphNotify::rich_body()
--- error_code: 202
--- error_log eval
qr/\[warn\] .*validation tokens of rich notifications are not checked: .* for tests only in .*nginx\.conf:\d+/
--- post_check
my @l = wait_lines(1);
is(scalar @l, 1, "written unchecked");
ok(!status()->{validationTokens}{enabled}, "the status page says so");



=== TEST 22: rich notifications without an app id to check tokens against
--- http_config
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state secret-1;
    graph_notify_decryption_key test-key-1
        $TEST_NGINX_TOP/t/data/enc-test.crt $TEST_NGINX_TOP/t/data/enc-test.key;
--- must_die
--- error_log eval
qr/\[emerg\] .*rich notifications need graph_notify_app_id or graph_notify_validation_audience, to check their validation tokens in .*nginx\.conf:\d+/



=== TEST 23: a new signing key: one fetch of the key set, then accepted
--- request
POST /graph/notify?validationToken=x
--- error_code: 200
--- post_check
ok(wait_for(sub { status()->{validationTokens}{keys} >= 1 }), "key set fetched");
my $before = sim_count("jwks");
my $kids = sim_post('/_sim/signing-keys/rotate', { keep_old => 1 });
is(scalar @{ $kids->{kids} }, 2, "two keys published");
my $r = http_post(notify_url(), rich_body(signed => 1));
is($r->{status}, 202, "accepted");
my @l = wait_lines(1);
is(scalar @l, 1, "written");
is(sim_count("jwks") - $before, 1, "after exactly one fetch");
is(status()->{validationTokens}{keys}, 2, "both keys known");



=== TEST 24: signing keys rotated: in-flight tokens of the old key pass, the new key after a refetch
--- request
POST /graph/notify?validationToken=x
--- error_code: 200
--- post_check
ok(wait_for(sub { status()->{validationTokens}{keys} >= 1 }), "key set fetched");
my $old = rich_body(signed => 1);
my $kids = sim_post('/_sim/signing-keys/rotate', { keep_old => 0 });
is(scalar @{ $kids->{kids} }, 1, "only the new key published");
is(http_post(notify_url(), $old)->{status}, 202, "old key's batch");
my @l = wait_lines(1);
is(scalar @l, 1, "written with the kept key");
is(http_post(notify_url(), rich_body(signed => 1))->{status}, 202, "new key's batch");
@l = wait_lines(2);
is(scalar @l, 2, "written after a refetch");
is(status()->{validationTokens}{keys}, 1, "the old key is gone");
