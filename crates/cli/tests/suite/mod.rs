mod eval;
mod optimize;
mod real_server;
mod run;
mod secrets;
mod support;
mod throttle;
