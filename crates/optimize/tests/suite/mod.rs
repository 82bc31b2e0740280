mod loop_e2e;
mod meta_tools;
mod report;
pub mod support;
