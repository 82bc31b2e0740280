mod cache;
mod examples;
mod harness;
mod integrity;
mod resume;
mod support;
