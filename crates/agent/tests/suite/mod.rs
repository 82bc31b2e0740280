mod atif;
mod context;
mod harness;
mod host_only;
mod phases;
mod subagents;
mod support;
mod tools;
