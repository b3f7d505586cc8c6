#!/usr/bin/perl
# Reads a JSON array of Authentication-Results header values (RFC 8601) on stdin with Debian's
# Mail::AuthenticationResults (libmail-authenticationresults-perl; tests/run.sh installs it) and
# prints, for each, its authserv-id and the results of every dmarc, dkim and spf entry,
# lowercase, or null where it cannot parse the value.
use strict;
use warnings;
use JSON::PP;
use Mail::AuthenticationResults::Parser;

local $/;
my @read;
for my $value (@{ decode_json(<STDIN>) }) {
    my $parsed = eval { Mail::AuthenticationResults::Parser->new()->parse($value) };
    if (!$parsed) {
        push @read, undef;
        next;
    }
    my $id = $parsed->value()->value();
    my %results = (authserv_id => (defined $id && $id ne '' ? lc $id : undef));
    for my $method (qw(dmarc dkim spf)) {
        my $entries = $parsed->search({ 'isa' => 'entry', 'key' => $method })->children();
        $results{$method} = [ map { lc $_->value() } @$entries ];
    }
    push @read, \%results;
}
print encode_json(\@read);
