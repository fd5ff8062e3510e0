mod excerpt;
mod junit;
