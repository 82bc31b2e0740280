mod cache;
mod examples;
mod harness;
mod resume;
mod support;
