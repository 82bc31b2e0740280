mod eval;
mod optimize;
mod real_server;
mod run;
mod secrets;
mod settings;
mod support;
mod throttle;
