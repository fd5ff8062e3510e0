mod common;
mod pipelines;
mod when_cases;
