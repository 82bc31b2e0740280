mod eval;
mod optimize;
mod run;
mod secrets;
mod support;
