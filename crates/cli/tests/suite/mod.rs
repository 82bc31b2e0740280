mod eval;
mod optimize;
mod run;
mod secrets;
mod settings;
mod support;
