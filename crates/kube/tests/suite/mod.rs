mod cleanup;
mod exec;
mod fake;
mod lifecycle;
mod live_cluster;
mod support;
mod transfer;
