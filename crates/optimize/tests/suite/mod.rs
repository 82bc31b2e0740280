mod accept_e2e;
mod loop_e2e;
mod meta_tools;
pub mod support;
mod suspect_e2e;
