# The body as the worker reads it: one pass that validates as strictly as
# jansson, fields found by their decoded keys, lines built from the body's
# own bytes (members as received, whitespace between tokens removed,
# escapes as sent).

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

no_shuffle();

# the item every test starts from, as JSON text with its clientState
our $ITEM = GraphNotify::json_encode(GraphNotify::basic_item(record => "e1"));

# the item as the output must hold it (no clientState), decoded
sub expected {
    my ($item) = @_;
    my %e = %$item;
    delete $e{clientState};
    return \%e;
}

# the line without what the worker adds
sub members {
    my ($line) = @_;
    my %m = %$line;
    delete $m{receivedAt};
    delete $m{kind};
    return \%m;
}

# bodies that jansson 2.14 refuses, each answered 400 (the name says why)
our @BAD = (
    [ "top level a string",          '"value"' ],
    [ "top level a number",          '1' ],
    [ "top level null",              'null' ],
    [ "tab in a string",             qq|{"value":[{"subscriptionId":"a\tb"}]}| ],
    [ "newline in a string",         qq|{"value":["a\nb"]}| ],
    [ "NUL byte in a string",        qq|{"value":["a\x00b"]}| ],
    [ "overlong UTF-8",              qq|{"value":["\xc0\xaf"]}| ],
    [ "overlong 3-byte UTF-8",       qq|{"value":["\xe0\x80\xaf"]}| ],
    [ "UTF-8 surrogate",             qq|{"value":["\xed\xa0\x80"]}| ],
    [ "UTF-8 above U+10FFFF",        qq|{"value":["\xf4\x90\x80\x80"]}| ],
    [ "truncated UTF-8",             qq|{"value":["\xe2\x82"]}| ],
    [ "stray continuation byte",     qq|{"value":["\x80"]}| ],
    [ "invalid UTF-8 in a key",      qq|{"value":[{"\xff":1}]}| ],
    [ "\\u0000 in a string",         '{"value":["a\u0000b"]}' ],
    [ "\\u0000 in a key",            '{"value":[{"a\u0000":1}]}' ],
    [ "lone high surrogate",         '{"value":["\ud800"]}' ],
    [ "high surrogate, then text",   '{"value":["\ud800\u0041"]}' ],
    [ "lone low surrogate",          '{"value":["\udc00"]}' ],
    [ "two high surrogates",         '{"value":["\ud800\ud800"]}' ],
    [ "unknown escape",              '{"value":["\x"]}' ],
    [ "short \\u escape",            '{"value":["\u12"]}' ],
    [ "\\U escape",                  '{"value":["\U0041"]}' ],
    [ "leading zero",                '{"value":[01]}' ],
    [ "minus zero then digits",      '{"value":[-01]}' ],
    [ "no fraction digits",          '{"value":[1.]}' ],
    [ "no integer digits",           '{"value":[.5]}' ],
    [ "a lone minus",                '{"value":[-]}' ],
    [ "a plus sign",                 '{"value":[+1]}' ],
    [ "no exponent digits",          '{"value":[1e]}' ],
    [ "hex number",                  '{"value":[0x10]}' ],
    [ "NaN",                         '{"value":[NaN]}' ],
    [ "Infinity",                    '{"value":[Infinity]}' ],
    [ "integer over int64",          '{"value":[9223372036854775808]}' ],
    [ "integer under int64",         '{"value":[-9223372036854775809]}' ],
    [ "long integer",                '{"value":[123456789012345678901234567890]}' ],
    [ "real overflow",               '{"value":[1e309]}' ],
    [ "negative real overflow",      '{"value":[-2e308]}' ],
    [ "real overflow by rounding",   '{"value":[1.7976931348623159e308]}' ],
    [ "misspelt literal",            '{"value":[tru]}' ],
    [ "literal with a tail",         '{"value":[nulls]}' ],
    [ "capital literal",             '{"value":[True]}' ],
    [ "trailing comma in an array",  '{"value":[1,]}' ],
    [ "trailing comma in an object", '{"value":[],}' ],
    [ "missing colon",               '{"value" []}' ],
    [ "a key that is no string",     '{value:[]}' ],
    [ "single quotes",               q|{'value':[]}| ],
    [ "trailing garbage",            '{"value":[]} x' ],
    [ "a second document",           '{"value":[]}{}' ],
    [ "unclosed object",             '{"value":[]' ],
    [ "unclosed string",             '{"value":["abc' ],
    [ "a byte order mark",           qq|\xef\xbb\xbf{"value":[]}| ],
    [ "a form feed as whitespace",   qq|{"value":\f[]}| ],
    [ "2049 levels",                 '{"value":' . ('[' x 2048) . (']' x 2048) . '}' ],
    [ "a scalar at level 2049",      '{"value":' . ('[' x 2047) . '1' . (']' x 2047) . '}' ],
);

run_tests();

__DATA__

=== TEST 1: whitespace between tokens (spaces, tabs, CR, LF) is not in the line, which is JSON-equal to the item
--- request eval
my $body = GraphNotify::json_encode({ value => [ GraphNotify::basic_item(record => "w1") ] });
# whitespace around every structural character, outside strings only
my $sp = " \t\r\n  ";
$body =~ s/("(?:[^"\\]|\\.)*")|([{}\[\]:,])/defined $1 ? $1 : "$sp$2$sp"/ge;
"POST /graph/notify\n$sp$body$sp"
--- error_code: 202
--- post_check
my @l = wait_lines(1);
is(scalar @l, 1, "one line");
my @raw = output_lines();
unlike($raw[0], qr/[\t\r]/, "no tab or CR in the line");
unlike($raw[0], qr/[{}\[\]:,] | [{}\[\]:,]/, "no space around structure");
is_deeply(main::members($l[0]), main::expected(GraphNotify::basic_item(record => "w1")),
          "the line is the item, minus clientState");
is($l[0]{kind}, "basic", "kind");



=== TEST 2: escapes inside strings are kept as sent and mean what they meant
--- request eval
my $item = $main::ITEM;
my $extra = q|"esc":{"quote":"a\"b","backslash":"c\\\\d","slash":"\/path\/x","e":"caf\u00e9","E":"caf\u00E9",|
          . q|"pair":"\ud83d\ude00","ctl":"\b\f\n\r\t","ascii":"\u0041\u0062","del":"|
          . "\x7f" . q|","utf8":"|
          . "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" . q|",|
          . q|"nums":[-0,0,1E+2,1e-2,-1.5E-3,9223372036854775807,-9223372036854775808,1.7976931348623157e308,1e-400,0.0e999],|
          . q|"lits":[true,false,null],"empty":{},"none":[]},|;
$item =~ s/^\{/{$extra/;
"POST /graph/notify\n{\"value\":[$item]}"
--- error_code: 202
--- post_check
my @l = wait_lines(1);
is(scalar @l, 1, "one line");
my @raw = output_lines();
for my $sent (q|"a\"b"|, q|"c\\\\d"|, q|"\/path\/x"|, q|"caf\u00e9"|, q|"caf\u00E9"|,
              q|"\ud83d\ude00"|, q|"\b\f\n\r\t"|, q|"\u0041\u0062"|, q|1E+2|,
              q|-1.5E-3|, q|1.7976931348623157e308|, q|1e-400|, q|0.0e999|) {
    ok(index($raw[0], $sent) >= 0, "$sent as sent");
}
my $e = $l[0]{esc};
is($e->{quote}, 'a"b', "quote");
is($e->{backslash}, 'c\\d', "backslash");
is($e->{slash}, '/path/x', "slash");
is($e->{e}, "caf\x{e9}", "\\u00e9");
is($e->{E}, "caf\x{e9}", "\\u00E9");
is($e->{pair}, "\x{1f600}", "surrogate pair");
is($e->{ctl}, "\b\f\n\r\t", "control escapes");
is($e->{ascii}, "Ab", "ASCII escapes");
is($e->{del}, "\x7f", "DEL as it is");
is($e->{utf8}, "\x{e9}\x{20ac}\x{1f600}", "UTF-8 as it is");
is(scalar @{ $e->{nums} }, 10, "numbers");
is($e->{nums}[5], 9223372036854775807, "int64 max");
is_deeply($e->{lits}, [ JSON::PP::true, JSON::PP::false, undef ], "literals")
    if $INC{'JSON/PP.pm'};
is_deeply([ $e->{empty}, $e->{none} ], [ {}, [] ], "empty object and array");
is($l[0]{resourceData}{id}, "e1", "the rest of the item");



=== TEST 3: the module's own keys are stripped, also when written with escapes
--- request eval
my $item = $main::ITEM;
my $forged = q|"kin\u0064":"forged","\u0072eceivedAt":"1970-01-01T00:00:00.000Z",|
           . q|"decryptedResourc\u0065":{"id":"forged"},"callEven\u0074":"forged",|
           . q|"\u0063allRecord":{"id":"forged"},"fetchedA\u0074":"forged",|
           . q|"notification\u0073":99,"backfil\u006c":true,|;
$item =~ s/^\{/{$forged/;
"POST /graph/notify\n{\"value\":[$item]}"
--- error_code: 202
--- post_check
my @l = wait_lines(1);
is(scalar @l, 1, "one line");
my @raw = output_lines();
unlike($raw[0], qr/forged/, "no forged value in the line");
unlike($raw[0], qr/\\u00/, "no escaped key copied");
is($l[0]{kind}, "basic", "our kind");
isnt($l[0]{receivedAt}, "1970-01-01T00:00:00.000Z", "our time");
for my $key (qw(decryptedResource callEvent callRecord fetchedAt notifications backfill clientState)) {
    ok(!exists $l[0]{$key}, "no $key");
}



=== TEST 4: clientState is found by its decoded key and compared decoded; a field twice drops the item
--- request eval
my $ok = GraphNotify::basic_item(record => "escaped-key");
delete $ok->{clientState};
my $a = GraphNotify::json_encode($ok);
$a =~ s/^\{/{"client\\u0053tate":"secret-1",/;
my $b = $a;
$b =~ s/"escaped-key/"wrong-state/g;
$b =~ s/"secret-1"/"wrong"/;
my $c = GraphNotify::json_encode(GraphNotify::basic_item(record => "escaped-value"));
$c =~ s/"secret-1"/"secret\\u002d1"/;
my $d = GraphNotify::json_encode(GraphNotify::basic_item(record => "twice"));
$d =~ s/^\{/{"client\\u0053tate":"wrong",/;
my $e = GraphNotify::json_encode(GraphNotify::basic_item(record => "escaped-tenant"));
$e =~ s/"11111111-/"\\u00311111111-/;
my $f = GraphNotify::json_encode(GraphNotify::basic_item(record => "smuggled"));
$f =~ s/"clientState":"secret-1"/"client\\u0053tate":"nope"/;
"POST /graph/notify\n{\"value\":[$a,$b,$c,$d,$e,$f]}"
--- error_code: 202
--- error_log
graph_notify: dropped 3 of 6 item(s) (malformed=1 client_state=2); first: item 1
--- post_check
my @l = wait_lines(3);
is(join(",", map { $_->{resourceData}{id} } @l), "escaped-key,escaped-value,escaped-tenant",
   "the items whose decoded clientState is right");
is($l[2]{tenantId}, "11111111-2222-3333-4444-555555555555", "the tenant decoded");
unlike(read_file(output_file()), qr/secret|nope|wrong/, "no client state in the output");
my $st = status();
is($st->{items}{dropped}{client_state}, 2, "wrong states");
is($st->{items}{dropped}{malformed}, 1, "clientState twice");



=== TEST 5: everything jansson refuses is answered 400, with one log line a second
--- request
GET /graph/status
--- error_code: 200
--- post_check
my $t0 = time;
for my $bad (@main::BAD) {
    my ($name, $body) = @$bad;
    is(GraphNotify::http_post("/graph/notify", $body)->{status}, 400, "400: $name");
}
my $most = 1 + int(time - $t0);
my $n = log_count(qr/graph_notify: request body is not JSON: .*answered 400/);
cmp_ok($n, '>=', 1, "logged");
cmp_ok($n, '<=', $most, "at most one line a second ($n)");
is(status()->{rejected}, scalar @main::BAD, "every one counted");
is(status()->{items}{received}, 0, "no item taken");
# just inside the bounds: 2048 levels, an empty container at the last one
is(GraphNotify::http_post("/graph/notify",
       '{"value":' . ('[' x 2047) . (']' x 2047) . '}')->{status},
   202, "2048 levels are fine (the item, an array, is dropped)");
is(status()->{items}{dropped}{malformed}, 1, "dropped as malformed");
