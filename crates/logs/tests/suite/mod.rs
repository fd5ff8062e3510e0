mod excerpt;
mod junit;
mod logset;
