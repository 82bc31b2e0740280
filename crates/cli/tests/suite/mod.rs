mod eval;
mod secrets;
mod support;
