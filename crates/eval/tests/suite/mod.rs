mod cache;
mod examples;
mod harness;
mod integrity;
mod pool;
mod resume;
mod steps;
mod support;
