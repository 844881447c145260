package SubscriptionState;

# Shared by the tests of the subscriptions' state file (t/034, t/035): the
# configuration, the files, and the FIFO that holds a save up on the disk.
# A FIFO in place of the state's temporary file makes the save's open()
# wait until the test opens it for reading; the save then fails (a FIFO
# cannot be synced) and is tried again.

use strict;
use warnings;

use POSIX qw(mkfifo);
use GraphNotify;
use Exporter 'import';

our @EXPORT = qw(
    $T sub_config dir state_file tmp_file healthy state plant_fifo
    blocked_task read_fifo
);

our $T = '11111111-2222-3333-4444-555555555555';

# outage=3s: a heartbeat, so a save, every second
sub sub_config {
    my ($b) = @_;
    return GraphNotify::graph_config(extra =>
        "graph_notify_subscription communications/callRecords tenant=$T "
        . "url=http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/graph/notify?b=$b;\n"
        . "    graph_notify_backfill longest_call=60s latency=0 outage=3s;\n");
}

sub dir { "$ENV{TEST_NGINX_SERVER_ROOT}/graph_notify_temp" }
sub state_file { dir() . "/subscriptions.state" }
sub tmp_file { dir() . "/subscriptions.state.tmp" }

sub healthy {
    return wait_for(sub {
        my $st = eval { status() } or return undef;
        my $s = $st->{subscriptions}{items}[0];
        return $s && $s->{verdict} eq 'healthy' ? $s : undef;
    });
}

sub state {
    my $s = read_file(state_file());
    return undef unless defined $s;
    return eval { json_decode($s) };
}

# The FIFO in place of the temporary file (the helper may be writing a
# regular one at that moment: then again).
sub plant_fifo {
    return wait_for(sub { mkfifo(tmp_file(), 0600) }, 10);
}

# The thread of $pid that waits in open() on the FIFO, once one does.
sub blocked_task {
    my ($pid) = @_;
    return wait_for(sub {
        for my $t (glob "/proc/$pid/task/*") {
            my $w = read_file("$t/wchan") // '';
            return (split m{/}, $t)[-1] if $w =~ /wait_for_partner|fifo/;
        }
        return undef;
    }, 10);
}

# What the held-up save writes into the FIFO.
sub read_fifo {
    open my $fh, '<', tmp_file() or return undef;
    local $/;
    my $s = <$fh>;
    close $fh;
    return $s;
}

1;
