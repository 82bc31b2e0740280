mod atif;
mod context;
mod harness;
mod phases;
mod subagents;
mod support;
mod tools;
