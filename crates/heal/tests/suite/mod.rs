mod fixers;
mod guards;
