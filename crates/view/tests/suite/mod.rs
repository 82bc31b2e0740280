mod browser;
mod safety;
pub mod support;
