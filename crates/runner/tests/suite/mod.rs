mod common;
mod job;
mod sandbox;
