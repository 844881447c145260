# The validation handshake: Graph's form-encoded token, echoed decoded.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

no_shuffle();
run_tests();

__DATA__

=== TEST 1: Graph's real token, form-encoded ("+" is a space, %3a a colon)
--- request
POST /graph/notify?validationToken=Validation%3a+Testing+client+application+reachability+for+subscription+Request-Id%3a+25460109-0e8b-4521-8090-dd691b407ed8
--- more_headers
Content-Type: text/plain; charset=utf-8
--- response_body chomp
Validation: Testing client application reachability for subscription Request-Id: 25460109-0e8b-4521-8090-dd691b407ed8
--- response_headers
Content-Type: text/plain; charset=utf-8
X-Content-Type-Options: nosniff
Content-Length: 117
--- error_code: 200
--- no_error_log
[warn]
[error]



=== TEST 2: upper-case escapes, an escaped "+" and the original query kept
--- request
POST /graph/notify?tenant=contoso&validationToken=a%3Ab%2Bc+d%7e%25
--- response_body chomp
a:b+c d~%
--- error_code: 200



=== TEST 3: the body of a handshake is not read, whatever it is
--- request
POST /graph/notify?validationToken=abc
not json at all
--- response_body chomp
abc
--- error_code: 200
--- post_check
is(status()->{handshakes}, 1, "one handshake counted");
is(status()->{requests}, 0, "no notification counted");



=== TEST 4: a NUL byte in the token is refused
--- request
POST /graph/notify?validationToken=abc%00def
--- error_code: 400
--- grep_error_log eval: qr/graph_notify: .*answered 400/
--- grep_error_log_out
graph_notify: validationToken has an invalid %-escape or a NUL byte, answered 400



=== TEST 5: a broken escape is refused (one log line a second)
--- request eval
["POST /graph/notify?validationToken=abc%G1", "POST /graph/notify?validationToken=abc%4"]
--- error_code eval
[400, 400]
--- post_check
is(log_count(qr/validationToken has an invalid %-escape or a NUL byte, answered 400/), 1, "one line a second for the same kind");



=== TEST 6: a token over 1 KiB is refused
--- request eval
["POST /graph/notify?validationToken=" . ("x" x 1025),
 "POST /graph/notify?validationToken=" . ("%41" x 1025),
 "POST /graph/notify?validationToken=" . ("y" x 1024)]
--- error_code eval
[400, 400, 200]
--- post_check
is(log_count(qr/validationToken is empty or longer than 1024 bytes, answered 400/), 1, "decoded length checked");
is(log_count(qr/validationToken longer than 1024 bytes, answered 400/), 1, "encoded length checked");



=== TEST 7: an empty token is refused
--- request
POST /graph/notify?validationToken=
--- error_code: 400
--- error_log
validationToken is empty or longer than 1024 bytes, answered 400



=== TEST 8: GET with a token, GET without, PUT: 405 with Allow: POST
--- request eval
["GET /graph/notify?validationToken=abc", "GET /graph/notify",
 "PUT /graph/notify\n{\"value\":[]}"]
--- error_code eval
[405, 405, 405]
--- response_headers eval
["Allow: POST", "Allow: POST", "Allow: POST"]
--- post_check
is(log_count(qr/graph_notify: method GET not allowed, Graph uses POST/), 1, "logged");
is(log_count(qr/graph_notify: method \S+ not allowed/), 1, "one line a second for the same kind");
is(status()->{rejected}, 3, "three rejections counted");
