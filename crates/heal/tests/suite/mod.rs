mod decisions;
mod fixers;
mod guards;
