# Bad input: the right status, one log line, and NGINX keeps serving.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

no_shuffle();

add_block_preprocessor(sub {
    my ($block) = @_;

    # whatever the block sent, the worker must still answer afterwards
    $block->set_value('post_check', <<'END') unless defined $block->post_check;
is(GraphNotify::http_post("/graph/notify", GraphNotify::basic_body())->{status},
   202, "still serving");
is(scalar(() = wait_lines(1)), 1, "and writing");
is(log_count(qr/graph_notify: .*answered 400/), $main::expect_400 // 1,
   "one log line for the bad request");
END
});

run_tests();

__DATA__

=== TEST 1: not JSON
--- request
POST /graph/notify
hello
--- error_code: 400
--- error_log
graph_notify: request body is not JSON: '[' or '{' expected (byte 0), answered 400



=== TEST 2: truncated JSON
--- request
POST /graph/notify
{"value":[{"subscriptionId":"s","tenantId":"t","changeTy
--- error_code: 400
--- error_log eval
qr/graph_notify: request body is not JSON: .*answered 400/



=== TEST 3: "value" is not an array
--- request
POST /graph/notify
{"value":{"subscriptionId":"s"}}
--- error_code: 400
--- error_log
graph_notify: request body has no "value" array or a malformed "validationTokens", answered 400



=== TEST 4: no "value" at all, and a JSON array at the top
--- request eval
["POST /graph/notify\n{\"values\":[]}", "POST /graph/notify\n[1,2]"]
--- error_code eval
[400, 400]
--- post_check
is(log_count(qr/graph_notify: request body has no "value" array/), 1, "one line a second for the same kind");



=== TEST 5: "validationTokens" that is not an array
--- request
POST /graph/notify
{"value":[],"validationTokens":"a.b.c"}
--- error_code: 400
--- error_log
graph_notify: request body has no "value" array or a malformed "validationTokens", answered 400



=== TEST 6: an empty body
--- request
POST /graph/notify
--- error_code: 400
--- error_log
graph_notify: empty request body, answered 400



=== TEST 7: items of the wrong types are dropped with one line, the rest kept
--- request eval
"POST /graph/notify\n" . GraphNotify::json_encode({ value => [
    { %{ GraphNotify::basic_item() }, subscriptionId => "s\nforged [error] line",
      clientState => "nope" },
    1, "x", undef, [], {},
    { %{ GraphNotify::basic_item() }, subscriptionId => 7 },
    { %{ GraphNotify::basic_item() }, resourceData => "x" },
    { %{ GraphNotify::basic_item() }, changeType => undef },
    { %{ GraphNotify::basic_item() }, tenantId => [] },
    { %{ GraphNotify::basic_item() }, encryptedContent => "x" },
    GraphNotify::basic_item(record => "good") ] })
--- error_code: 202
--- error_log
graph_notify: dropped 11 of 12 item(s) (malformed=10 client_state=1); first: item 0, subscription (invalid): clientState missing or wrong
--- no_error_log
forged
--- post_check
my @l = wait_lines(1);
is(scalar @l, 1, "one item written");
is($l[0]{resourceData}{id}, "good", "the good one");
is(status()->{items}{dropped}{malformed}, 10, "counted");
is(log_count(qr/graph_notify: dropped/), 1, "one line for eleven drops");



=== TEST 8: deep nesting is refused by the parser, not the stack
--- request eval
"POST /graph/notify\n" . ('{"value":' x 5000) . '[]' . ('}' x 5000)
--- error_code: 400
--- error_log eval
qr/graph_notify: request body is not JSON: maximum parsing depth reached/



=== TEST 9: deep nesting inside an item is kept as it came
--- request eval
"POST /graph/notify\n" . GraphNotify::json_encode({ value => [
    { %{ GraphNotify::basic_item() },
      resourceData => { id => "deep", x => (eval { my $v = 1; $v = [$v] for 1 .. 500; $v }) } } ] })
--- error_code: 202
--- post_check
wait_lines(1);
my $s = read_file(output_file()) // '';
is(($s =~ tr/[//), 500, "500 levels written");
is(log_count(qr/graph_notify: .*answered 400/), 0, "not refused");



=== TEST 10: invalid UTF-8 in a string
--- request eval
"POST /graph/notify\n{\"value\":[{\"subscriptionId\":\"s\xff\xfe\"}]}"
--- error_code: 400
--- error_log eval
qr/graph_notify: request body is not JSON: .*answered 400/
