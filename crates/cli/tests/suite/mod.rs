mod eval;
mod support;
