# graph_notify_subscription is checked at "nginx -t": clear messages with
# the file and line of the declaration.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

no_shuffle();

our $APP = <<'END';
    graph_notify_zone graph_notify:1m;
    graph_notify_path graph_notify_temp;
    graph_notify_output logs/graph_notify.ndjson;
    graph_notify_client_state secret-1;
    graph_notify_app_id 5b4f6a52-1111-4222-8333-444455556666;
    graph_notify_client_secret not-used;
END

our $T = '11111111-2222-3333-4444-555555555555';
our $U = 'url=https://hooks.example.com/graph/notify';

run_tests();

__DATA__

=== TEST 1: the notification URL must be HTTPS when Graph is the real one
--- http_config eval
"$main::APP graph_notify_subscription communications/callRecords tenant=$main::T url=http://hooks.example.com/graph/notify;"
--- must_die
--- error_log eval
qr/\[emerg\] .*graph_notify_subscription in .*nginx\.conf:\d+: invalid URL "http:\/\/hooks.example.com\/graph\/notify", Graph posts only to https:\/\//



=== TEST 2: HTTP is accepted, with a warning, with a Graph stand-in
--- http_config eval
"$main::APP graph_notify_graph_url http://127.0.0.1:1;
graph_notify_subscription communications/callRecords tenant=$main::T url=http://127.0.0.1/graph/notify;"
--- request
GET /graph/status
--- error_code: 200
--- error_log eval
qr/\[warn\] .*graph_notify_subscription in .*nginx\.conf:\d+: "http:\/\/127.0.0.1\/graph\/notify" is not HTTPS/



=== TEST 3: an unknown rich= key
--- http_config eval
"$main::APP graph_notify_subscription \"user/8f5c2f0e-4c55-4b8e-9d3a-2a1f0b6c7d11/callConversations\" tenant=$main::T $main::U rich=no-such-key;"
--- must_die
--- error_log eval
qr/\[emerg\] .*graph_notify_subscription in .*nginx\.conf:\d+: unknown key "no-such-key"/



=== TEST 4: an expiry over what Graph allows for call records
--- http_config eval
"$main::APP graph_notify_subscription communications/callRecords tenant=$main::T $main::U expiry=4231m;"
--- must_die
--- error_log eval
qr/\[emerg\] .*expiry of 4231 minutes is over the 4230 that Graph allows for "communications\/callRecords" in .*nginx\.conf:\d+/



=== TEST 5: an expiry over a day for call conversations
--- http_config eval
"$main::APP graph_notify_decryption_key test-key-1 $ENV{TEST_NGINX_TOP}/t/data/enc-test.crt $ENV{TEST_NGINX_TOP}/t/data/enc-test.key;
graph_notify_subscription \"user/8f5c2f0e-4c55-4b8e-9d3a-2a1f0b6c7d11/callConversations\" tenant=$main::T $main::U rich=test-key-1 expiry=25h;"
--- must_die
--- error_log eval
qr/\[emerg\] .*expiry of 1500 minutes is over the 1440 that Graph allows/



=== TEST 6: a change type call records do not take
--- http_config eval
"$main::APP graph_notify_subscription communications/callRecords tenant=$main::T $main::U change=created,deleted;"
--- must_die
--- error_log eval
qr/\[emerg\] .*change type "deleted" is not one that "communications\/callRecords" takes \(created, updated\) in .*nginx\.conf:\d+/



=== TEST 7: call conversations take "updated" only, and only rich
--- http_config eval
"$main::APP graph_notify_subscription \"user/8f5c2f0e-4c55-4b8e-9d3a-2a1f0b6c7d11/callConversations\" tenant=$main::T $main::U change=created rich=k;"
--- must_die
--- error_log eval
qr/\[emerg\] .*takes only change=updated for callConversations in .*nginx\.conf:\d+/



=== TEST 8: call conversations without rich=
--- http_config eval
"$main::APP graph_notify_subscription \"user/8f5c2f0e-4c55-4b8e-9d3a-2a1f0b6c7d11/callConversations\" tenant=$main::T $main::U;"
--- must_die
--- error_log eval
qr/\[emerg\] .*needs rich=KEY_ID for callConversations/



=== TEST 9: no app credentials
--- http_config eval
"graph_notify_zone graph_notify:1m;
graph_notify_path graph_notify_temp;
graph_notify_output logs/graph_notify.ndjson;
graph_notify_client_state secret-1;
graph_notify_subscription communications/callRecords tenant=$main::T $main::U;"
--- must_die
--- error_log eval
qr/\[emerg\] .*graph_notify_subscription in .*nginx\.conf:\d+ needs the app's credentials/



=== TEST 10: a client state that no graph_notify location accepts, never echoed
--- http_config eval
"$main::APP graph_notify_subscription communications/callRecords tenant=$main::T $main::U client_state=other-secret;"
--- must_die
--- error_log eval
qr/\[emerg\] .*graph_notify_subscription in .*nginx\.conf:\d+: no graph_notify location accepts its client_state/
--- no_error_log eval
qr/other-secret/



=== TEST 11: a duplicate (resource, tenant, URL)
--- http_config eval
"$main::APP graph_notify_subscription communications/callRecords tenant=$main::T $main::U;
graph_notify_subscription /communications/callRecords tenant=$main::T,$main::T $main::U;"
--- must_die
--- error_log eval
qr/\[emerg\] .*duplicate subscription to "communications\/callRecords" for tenant $main::T at "https:\/\/hooks.example.com\/graph\/notify", first declared in .*nginx\.conf:\d+ in .*nginx\.conf:\d+/



=== TEST 12: a tenant that is not a GUID
--- http_config eval
"$main::APP graph_notify_subscription communications/callRecords tenant=contoso $main::U;"
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid tenant id "contoso", expected a GUID in .*nginx\.conf:\d+/



=== TEST 13: users=FILE needs "{id}", and every line a GUID
--- http_config eval
"$main::APP graph_notify_decryption_key test-key-1 $ENV{TEST_NGINX_TOP}/t/data/enc-test.crt $ENV{TEST_NGINX_TOP}/t/data/enc-test.key;
graph_notify_subscription \"user/{id}/callConversations\" tenant=$main::T $main::U rich=test-key-1 users=$ENV{TEST_NGINX_TOP}/t/data/client-secret.txt;"
--- must_die
--- error_log eval
qr/\[emerg\] .*line 1 of ".*client-secret.txt" is not a user id \(a GUID\) in .*nginx\.conf:\d+/
--- no_error_log eval
qr/s3cr/



=== TEST 14: rich= is refused for call records (Graph sends basic notifications only)
--- http_config eval
"$main::APP graph_notify_subscription communications/callRecords tenant=$main::T $main::U rich=test-key-1;"
--- must_die
--- error_log eval
qr/\[emerg\] .*rejects rich= for call records/



=== TEST 15: a location with graph_notify is needed
--- http_config eval
"$main::APP graph_notify_subscription communications/callRecords tenant=$main::T $main::U;"
--- config
    location = /graph/status { graph_notify_status; }
--- must_die
--- error_log eval
qr/\[emerg\] .*needs a location with "graph_notify" to receive its notifications/



=== TEST 16: graph_notify_backfill and graph_notify_subscription_prune check their values
--- http_config eval
"$main::APP graph_notify_backfill longest_call=forever;"
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid parameter "longest_call=forever", expected longest_call=TIME, latency=TIME or outage=TIME in .*nginx\.conf:\d+/
