mod docker;
mod local;
