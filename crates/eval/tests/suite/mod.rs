mod cache;
mod examples;
mod harness;
mod pool;
mod resume;
mod support;
