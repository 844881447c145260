# The operations kit in contrib/ names only metrics (and label values) that
# the status page exports, and the Grafana dashboard is valid JSON.

use lib 't/lib';
use Test::Nginx::Socket 'no_plan';
use GraphNotify;

# with the Graph client and a subscription, so that the status page shows
# every metric there is
master_on();
no_shuffle();
GraphNotify::start_sim();

our $T = '11111111-2222-3333-4444-555555555555';

sub config {
    return GraphNotify::graph_config(extra =>
        "graph_notify_subscription communications/callRecords tenant=$T "
        . "url=http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/graph/notify;");
}

run_tests();

# metric name => { label => { value => 1 } }, from the Prometheus output
sub exported {
    my ($text) = @_;
    my %m;
    for (split /\n/, $text) {
        next if /^#/ || !/^(graph_notify_\w+)(?:\{([^}]*)\})? /;
        my ($name, $labels) = ($1, $2 // '');
        $m{$name} //= {};
        $m{$name}{$1}{$2} = 1 while $labels =~ /(\w+)="([^"]*)"/g;
    }
    return \%m;
}

# Every graph_notify_* series in a PromQL expression, with its matchers.
sub check_expr {
    my ($m, $where, $expr) = @_;
    my $n = 0;
    while ($expr =~ /\b(graph_notify_[a-z_]+)(\{[^}]*\})?/g) {
        my ($name, $sel) = ($1, $2 // '');
        $n++;
        ok($m->{$name}, "$where: $name is exported");
        next unless $m->{$name};
        while ($sel =~ /(\w+)\s*(=~|=)\s*"([^"]*)"/g) {
            my ($label, $op, $value) = ($1, $2, $3);
            next if $label eq 'instance' || $label eq 'job';
            for my $v ($op eq '=' ? ($value) : split /\|/, $value) {
                ok($m->{$name}{$label}{$v},
                   "$where: $name has $label=\"$v\"");
            }
        }
    }
    return $n;
}

sub contrib_check {
    my $text = wait_for(sub {
        my $t = status_text("?format=prometheus");
        return $t =~ /^graph_notify_subscription_up\{/m ? $t : undef;
    });
    ok($text, "the subscription's metrics are on the status page");
    my $m = exported($text // '');
    ok(keys %$m > 10, "the status page exports metrics");
    my $top = $ENV{TEST_NGINX_TOP};

    my $rules = read_file("$top/contrib/prometheus/graph-notify.rules.yml");
    ok(defined $rules, "the alerting rules are there");
    my ($alerts, $series) = (0, 0);
    # "expr: ..." on one line, or "expr: >" followed by indented lines
    while ($rules =~ /^([ ]*)expr:[ \t]*(>-?|\|-?)?[ \t]*(.*)\n((?:\1[ \t]+\S.*\n)*)/mg) {
        my $expr = $2 ? $4 : $3;
        $alerts++;
        $series += check_expr($m, "rule $alerts", $expr);
    }
    cmp_ok($alerts, '>=', 8, "$alerts alerting expressions");
    my @names = $rules =~ /^\s*- alert: (\w+)/mg;
    is(scalar @names, $alerts, "one expression per alert");
    for my $topic (qw(HelperDown QueueFilling OutputFailing GraphErrors
                      TokenFailing))
    {
        ok((grep { /$topic/ } @names), "an alert for $topic");
    }

    my $dash = read_file("$top/contrib/grafana/graph-notify.dashboard.json");
    my $d = eval { json_decode($dash) };
    ok($d, "the dashboard is valid JSON") or diag($@);
    return unless $d;
    my $panels = 0;
    for my $p (@{ $d->{panels} || [] }) {
        $panels++;
        for my $t (@{ $p->{targets} || [] }) {
            $series += check_expr($m, "panel \"$p->{title}\"", $t->{expr});
        }
    }
    cmp_ok($panels, '>=', 8, "$panels panels");

    # a metric the kit does not show yet is worth a note, not a failure
    my $used = $rules . $dash;
    for my $name (sort keys %$m) {
        diag("contrib/ does not use $name yet")
            unless $used =~ /\b\Q$name\E\b/;
    }
}

__DATA__

=== TEST 1: the alerting rules and the dashboard name exported metrics only
--- http_config eval
main::config()
--- init
GraphNotify::sim_reset();
--- request
GET /graph/status?format=prometheus
--- response_headers
Content-Type: text/plain; version=0.0.4; charset=utf-8
--- post_check
main::contrib_check();
