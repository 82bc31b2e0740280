mod examples;
mod resume;
mod support;
