//! Integration tests: one binary, real servers on 127.0.0.1:0, real HTTP peers, the real binary
//! for crash and config tests, and the official Python verifiers.

mod harness;

mod backup;
mod bad_input;
mod calendar_corpus;
mod config_check;
mod contract;
mod crash;
mod cyrus;
mod email;
mod email_oauth2;
mod email_on_cyrus;
mod events;
mod inbound;
mod mail_servers;
mod oauth_provider;
mod outbound;
mod packaging;
mod reload;
mod reply_corpus;
mod retention;
mod storage_full;
mod systemd;
mod webhooks;
